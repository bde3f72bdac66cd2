"""Generation throughput: the project's generation path against the one it replaced, in one run, on
the two workloads that generate the most — the simulator's and the evaluation's.

    python benchmarks/generation.py                    # 96 requests a workload, ~4 minutes here
    python benchmarks/generation.py --requests 192 --model /path/to/hf-folder

* **before** — fp32 weights, batches of 16 (`GenerationConfig(batch_size=16, precision="fp32")`),
  the path every generation took before bf16 generation;
* **now** — `GenerationConfig()`: bf16 weights where the processor computes them (AVX-512 BF16 or
  AMX; else fp32, and then the two paths are the same), batches of 32.

Workloads: the simulator's requests (its sessions' triggers on the default corpus, as it asks for
them) and held-out rows cut from eval-split files (as the evaluation asks). For each: proposals/s of
both paths and their ratio, how many proposals are identical, and the acceptance (docs/design.md's rule
against the truth) of each path's proposals — drift from bf16 must be measured where it matters.
Appends the figures to benchmarks/out/generation.json.
"""

from __future__ import annotations

import argparse
import time
from datetime import date

from report import report, table


def main() -> None:
    from echo_dagster import env
    from echo_dagster.completion import CompletionRequest
    from echo_dagster.corpus import DEFAULT_CORPUS, line_examples, scan_source
    from echo_dagster.metrics import simulated_accept
    from echo_dagster.model.generation import GenerationConfig, complete
    from echo_dagster.model.loading import load_model, resolve_precision
    from echo_dagster.simulate.run import SimulationSpec, planned_requests
    from echo_dagster.splits import file_split, repo_of

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--model", default=env.base_model())
    args = parser.parse_args()

    simulated = planned_requests(SimulationSpec(source=DEFAULT_CORPUS, start=date(2026, 1, 5), days=1, users=4,
                                                max_completions=args.requests, seed=0))
    held_out_files = [f for f in scan_source(DEFAULT_CORPUS).files if file_split(repo_of(f.path), f.path) == "eval"]
    rows = line_examples(held_out_files, args.requests, seed=0)
    workloads = {"simulator": [(r, t) for r, t in simulated],
                 "evaluation": [(CompletionRequest(r["prefix"], r["suffix"]), r["target"]) for r in rows]}
    paths = {"before": GenerationConfig(batch_size=16, precision="fp32"), "now": GenerationConfig()}
    figures = {"model": args.model, "precision_now": resolve_precision(paths["now"].precision), "workloads": {}}
    for name, work in workloads.items():
        requests, truths = [r for r, _ in work], [t for _, t in work]
        out, seconds = {}, {}
        for path, config in paths.items():
            loaded = load_model(args.model, env.models_cache(), precision=config.precision)
            started = time.perf_counter()
            out[path] = complete(loaded, requests, config)
            seconds[path] = time.perf_counter() - started
        figures["workloads"][name] = {
            "requests": len(requests),
            **{f"{path}_proposals_per_s": round(len(requests) / seconds[path], 2) for path in paths},
            "ratio": round(seconds["before"] / seconds["now"], 2),
            "identical": sum(a == b for a, b in zip(out["before"], out["now"])),
            **{f"{path}_acceptance": round(sum(simulated_accept(p, t) for p, t in zip(out[path], truths))
                                          / len(truths), 4) for path in paths}}
    report("generation", figures)
    print(table(["workload", "before (fp32, batch 16)", "now", "ratio", "identical proposals",
                 "acceptance before → now"],
                [[n, f"{w['before_proposals_per_s']}/s", f"{w['now_proposals_per_s']}/s", f"{w['ratio']}×",
                  f"{w['identical']}/{w['requests']}", f"{w['before_acceptance']:.1%} → {w['now_acceptance']:.1%}"]
                 for n, w in figures["workloads"].items()]))


if __name__ == "__main__":
    main()
