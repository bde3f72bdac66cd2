"""Serving latency: `echo-dagster serve` with the embedded default against plain HF `generate`, in
one run, on single-line completions of held-out code (150-token prompts, a trigger in the middle of
a line).

    python benchmarks/serving.py                 # ~4 minutes here
    python benchmarks/serving.py --requests 80 --model /path/to/hf-folder

* **plain HF** — the model as `transformers` loads it (fp32), `generate` for one prompt at a time,
  greedy, at most 20 new tokens, stopped at the line's end as the served paths stop a mid-line
  completion: what serving one request took before a server existed;
* **served** — the server in its own process (`echo-dagster serve`), OpenAI's completions API over
  loopback, with each local engine (`transformers`: bf16 where the CPU has it, concurrent requests
  batched; `ctranslate2`: int8, one request at a time): one client (latency p50/p95, proposals/s,
  and the acceptance of its proposals against the rest of the line, the drift int8 may cost), one
  client streaming (time to the first token), and 8 clients at once (latency p50/p95,
  proposals/s). During the 8-client load a checkpoint is promoted: the swap's load time (with
  ctranslate2, its conversion), and failed requests (there must be none).

Appends the figures to benchmarks/out/serving.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from report import report, table

PROMPT_TOKENS = 150
CLIENTS = 8
ENGINES = ("transformers", "ctranslate2")


def prompts(tokenizer, count: int, seed: int = 0) -> list[tuple[str, str]]:
    """(prefix, suffix) at random points in the middle of lines of eval-split files, the prefix cut to
    PROMPT_TOKENS tokens."""
    import random

    from echo_dagster.corpus import DEFAULT_CORPUS, scan_source
    from echo_dagster.splits import file_split, repo_of

    files = [f for f in scan_source(DEFAULT_CORPUS).files if file_split(repo_of(f.path), f.path) == "eval"]
    rng, out = random.Random(seed), []
    while len(out) < count:
        text = rng.choice(files).text
        lines = text.splitlines(keepends=True)
        at = rng.randrange(len(lines))
        line = lines[at]
        body = line.strip()
        if len(body) < 12:
            continue
        start = len(line) - len(line.lstrip())
        cut = start + rng.randrange(4, len(body) - 2)  # a few characters typed, a few left
        offset = sum(len(x) for x in lines[:at]) + cut
        prefix, suffix = text[:offset], text[offset:]
        spans = tokenizer(prefix, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
        if len(spans) < PROMPT_TOKENS:
            continue
        out.append((prefix[spans[-PROMPT_TOKENS][0]:], suffix))
    return out


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def plain_hf(model_spec: str, work: list[tuple[str, str]]) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from echo_dagster import env
    from echo_dagster.model.loading import resolve_folder, split_spec

    folder = resolve_folder(split_spec(model_spec)[0], env.models_cache())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    seconds = []
    for prefix, _ in work:
        ids = tokenizer(prefix, return_tensors="pt")
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(**ids, max_new_tokens=20, do_sample=False, pad_token_id=tokenizer.eos_token_id,
                           stop_strings=["\n"], tokenizer=tokenizer)
        seconds.append(time.perf_counter() - started)
    return {"p50_ms": round(statistics.median(seconds) * 1000), "p95_ms": round(percentile(seconds, 0.95) * 1000),
            "proposals_per_s": round(len(seconds) / sum(seconds), 2)}


class Server:
    def __init__(self, home: Path, model: str, registry: Path, engine: str):
        from echo_dagster.capture.tokens import TokenStore

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = TokenStore(home / "tokens.json").add("bench")
        env = os.environ | {"ECHO_HOME": str(home)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "echo_dagster.cli", "serve", "--port", str(self.port), "--model", model,
             "--registry", str(registry), "--landing", str(home / "landing"), "--tokens", str(home / "tokens.json"),
             "--poll-s", "0.2", "--engine", engine], env=env, stdout=subprocess.DEVNULL, stderr=open(home / "server.log", "w"))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        raise RuntimeError(f"the server did not start: see {home / 'server.log'}")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=120)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def body(prefix: str, suffix: str, stream: bool = False) -> dict:
    return {"prompt": prefix, "suffix": suffix, "max_tokens": 20, "stream": stream}


def one_client(server: Server, work) -> tuple[dict, list[str]]:
    from echo_dagster.metrics import simulated_accept

    seconds, texts = [], []
    with server.client() as http:
        for prefix, suffix in work:
            started = time.perf_counter()
            answer = http.post("/v1/completions", json=body(prefix, suffix))
            seconds.append(time.perf_counter() - started)
            answer.raise_for_status()
            texts.append(answer.json()["choices"][0]["text"])
    accepted = sum(simulated_accept(t, suffix.split("\n", 1)[0]) for t, (_, suffix) in zip(texts, work))
    return {"p50_ms": round(statistics.median(seconds) * 1000), "p95_ms": round(percentile(seconds, 0.95) * 1000),
            "proposals_per_s": round(len(seconds) / sum(seconds), 2), "empty": sum(not t for t in texts),
            "acceptance": round(accepted / len(work), 4)}, texts


def first_token(server: Server, work) -> dict:
    firsts = []
    with server.client() as http:
        for prefix, suffix in work:
            started = time.perf_counter()
            with http.stream("POST", "/v1/completions", json=body(prefix, suffix, stream=True)) as answer:
                first = None
                for line in answer.iter_lines():
                    if line.startswith("data: {") and first is None and json.loads(line[6:])["choices"][0]["text"]:
                        first = time.perf_counter() - started
            if first is not None:
                firsts.append(first)
    return {"ttft_p50_ms": round(statistics.median(firsts) * 1000),
            "ttft_p95_ms": round(percentile(firsts, 0.95) * 1000), "streams_with_text": len(firsts)}


def concurrent(server: Server, work, promote=None) -> dict:
    """CLIENTS clients each posting its share of `work`; `promote()` is called once a third is done."""
    seconds, failures, models, lock = [], [], [], threading.Lock()

    def client(mine) -> None:
        with server.client() as http:
            for prefix, suffix in mine:
                started = time.perf_counter()
                try:
                    answer = http.post("/v1/completions", json=body(prefix, suffix))
                    answer.raise_for_status()
                    with lock:
                        seconds.append(time.perf_counter() - started)
                        models.append(answer.json()["model"])
                except httpx.HTTPError as err:
                    with lock:
                        failures.append(str(err))

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(work[n::CLIENTS],)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    if promote is not None:
        while len(seconds) < len(work) // 3:
            time.sleep(0.05)
        promote()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"p50_ms": round(statistics.median(seconds) * 1000), "p95_ms": round(percentile(seconds, 0.95) * 1000),
            "proposals_per_s": round(len(seconds) / wall, 2), "failed": len(failures),
            "models": sorted(set(models))}


def main() -> None:
    from transformers import AutoTokenizer

    from echo_dagster import env
    from echo_dagster.model.loading import resolve_folder, split_spec
    from echo_dagster.training.registry import Registry

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--model", default=env.base_model())
    args = parser.parse_args()

    folder = resolve_folder(split_spec(args.model)[0], env.models_cache())
    work = prompts(AutoTokenizer.from_pretrained(folder), args.requests)
    figures = {"model": args.model, "requests": len(work), "prompt_tokens": PROMPT_TOKENS,
               "cpus": os.cpu_count(), "plain_hf": plain_hf(args.model, work)}
    texts = {}
    for engine in ENGINES:
        with tempfile.TemporaryDirectory() as tmp:
            home, registry = Path(tmp), Path(tmp) / "registry"
            # The checkpoint promoted under load: the base model's weights under another name.
            shutil.copytree(folder, registry / "bench-champion" / "merged")
            (registry / "bench-champion" / "echo_meta.json").write_text(json.dumps({"name": "bench-champion"}))
            server = Server(home, str(folder), registry, engine)  # converted already: loaded as it is
            try:
                with server.client() as http:  # warm up: the first request pays for lazy initialisation
                    http.post("/v1/completions", json=body(*work[0]))
                one, texts[engine] = one_client(server, work)
                figures[engine] = {"one_client": one,
                                   "streaming": first_token(server, work[: max(8, len(work) // 2)]),
                                   f"{CLIENTS}_clients": concurrent(server, work * 2, lambda: Registry(
                                       registry).set_champion("bench-champion", "benchmark"))}
                with server.client() as http:
                    swaps = http.get("/healthz").json()["serving"]["swaps"]
                figures[engine]["swap"] = swaps[-1] if swaps else None
            finally:
                server.stop()
    figures["identical_proposals"] = sum(a == b for a, b in zip(*texts.values()))
    plain = figures["plain_hf"]
    rows = [["plain HF generate (fp32, to the line's end)", "1", f"{plain['p50_ms']} ms", f"{plain['p95_ms']} ms",
             plain["proposals_per_s"], "—", "—", "—"]]
    for engine in ENGINES:
        f = figures[engine]
        for clients, run in (("1", f["one_client"]), (str(CLIENTS), f[f"{CLIENTS}_clients"])):
            rows.append([f"served, {engine}", clients, f"{run['p50_ms']} ms", f"{run['p95_ms']} ms",
                         run["proposals_per_s"], f"{f['streaming']['ttft_p50_ms']} ms" if clients == "1" else "—",
                         f"{run['acceptance']:.1%}" if "acceptance" in run else "—",
                         f"{f['swap']['load_s']} s, {run['failed']} failed" if "failed" in run else "—"])
    report("serving", figures)
    print(table(["path", "clients", "p50", "p95", "proposals/s", "first token p50", "acceptance",
                 "swap under load"], rows))
    print(f"identical proposals between the engines: {figures['identical_proposals']}/{len(work)}")


if __name__ == "__main__":
    main()
