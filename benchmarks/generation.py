"""Generation throughput: the project's decoder against HF `generate` (the reference), in one run, on
the same requests of the two workloads that generate the most — the simulator's and the evaluation's.

    python benchmarks/generation.py                    # 128 requests a workload, ~5 minutes here
    python benchmarks/generation.py --requests 256 --model /path/to/hf-folder

* **generate** — `GenerationConfig(decoder="generate")`: HF `generate` on batches of 32 prompts of
  similar length, each batch decoding until its longest proposal stops;
* **continuous** — `GenerationConfig()`: `model.decoding`'s continuous batching, 32 slots refilled
  with waiting prompts as rows stop.

Both load the weights alike (bf16 where the processor computes it). Workloads: the simulator's
requests (its sessions' triggers on the default corpus, as it asks for them) and held-out rows cut
from eval-split files (as the evaluation asks). For each: proposals/s of both paths and their ratio;
how many proposals are identical; acceptance and kept characters per request of each path's proposals
on the same rows, and their paired difference with its 95% interval resampling files (the judge's);
and how near each path came to the CPU's bound:

* **compute**: every token read or written (prompt tokens + proposed tokens) × 2 × the model's
  non-embedding parameters ÷ seconds, against the peak of a bf16 (or fp32) matmul of the model's own
  shapes measured on the same cores just before;
* **decoding steps** (continuous only): the bytes of weights one step reads × steps ÷ the seconds
  spent in steps, against the memory bandwidth measured (a sum over a buffer larger than the caches).

Appends the figures to benchmarks/out/generation.json.
"""

from __future__ import annotations

import argparse
import time
from datetime import date

from report import report, table


def matmul_peak(dtype, hidden: int, intermediate: int, tokens: int = 2048, repeats: int = 20) -> float:
    """FLOP/s of the model's largest matmul (tokens × hidden by hidden × intermediate)."""
    import torch

    a, b = torch.randn(tokens, hidden, dtype=dtype), torch.randn(hidden, intermediate, dtype=dtype)
    for _ in range(3):
        a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * tokens * hidden * intermediate * repeats / (time.perf_counter() - started)


def bandwidth(megabytes: int = 1024, repeats: int = 5) -> float:
    """Bytes/s read by a sum over a buffer far larger than the caches."""
    import torch

    buffer = torch.ones(megabytes * 2**20 // 4, dtype=torch.float32)
    buffer.sum()
    started = time.perf_counter()
    for _ in range(repeats):
        buffer.sum()
    return buffer.numel() * 4 * repeats / (time.perf_counter() - started)


def main() -> None:
    import torch

    from echo_dagster import env
    from echo_dagster.corpus import DEFAULT_CORPUS, line_examples, scan_source
    from echo_dagster.evaluation.offline import evaluate, paired, summarize
    from echo_dagster.model.decoding import DecodeStats
    from echo_dagster.model.generation import GenerationConfig, complete
    from echo_dagster.model.loading import load_model, resolve_precision
    from echo_dagster.simulate.run import SimulationSpec, planned_requests
    from echo_dagster.splits import file_split, repo_of

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--model", default=env.base_model())
    parser.add_argument("--resamples", type=int, default=2_000)
    args = parser.parse_args()

    simulated = planned_requests(SimulationSpec(source=DEFAULT_CORPUS, start=date(2026, 1, 5), days=1, users=4,
                                                max_completions=args.requests, seed=0))[: args.requests]
    held_out_files = [f for f in scan_source(DEFAULT_CORPUS).files if file_split(repo_of(f.path), f.path) == "eval"]
    rows = [{**r, "repo": repo_of(r["path"]), "source_kind": "held-out file"}
            for r in line_examples(held_out_files, args.requests, seed=0)]
    paths = {"generate": GenerationConfig(decoder="generate"), "continuous": GenerationConfig()}
    loaded = load_model(args.model, env.models_cache(), precision=GenerationConfig().precision)
    model = loaded.model
    config = model.config
    parameters = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    # An embedding lookup is no matmul; the LM head runs once a row a step, counted with the tokens written.
    body = parameters - embedding
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    peak = matmul_peak(model.dtype, config.hidden_size, config.intermediate_size)
    memory = bandwidth()
    figures = {"model": args.model, "precision": resolve_precision(GenerationConfig().precision),
               "threads": torch.get_num_threads(), "parameters": parameters,
               "matmul_peak_gflops": round(peak / 1e9, 1), "bandwidth_gb_s": round(memory / 1e9, 1),
               "workloads": {}}
    for name, work in {"simulator": simulated, "evaluation": rows}.items():
        scored, seconds, stats = {}, {}, DecodeStats()
        for path, generation in paths.items():
            measured = stats if path == "continuous" else None
            started = time.perf_counter()
            scored[path] = evaluate(lambda requests: complete(loaded, requests, generation, stats=measured), work)
            seconds[path] = time.perf_counter() - started
        prompt_tokens = stats.prefill_tokens  # both paths read the same prompts
        written = {path: sum(len(loaded.tokenizer(s.proposal, add_special_tokens=False)["input_ids"]) + 1
                             for s in results) for path, results in scored.items()}
        difference = paired(scored["continuous"], scored["generate"], resamples=args.resamples)
        summaries = {path: summarize(results, resamples=args.resamples) for path, results in scored.items()}
        figures["workloads"][name] = {
            "requests": len(work), "files": difference["files"], "sessions": difference["sessions"],
            "prompt_tokens": prompt_tokens,
            **{f"{path}_proposals_per_s": round(len(work) / seconds[path], 2) for path in paths},
            "ratio": round(seconds["generate"] / seconds["continuous"], 2),
            "identical": sum(a.proposal == b.proposal for a, b in zip(scored["generate"], scored["continuous"])),
            **{f"{path}_{metric}": summaries[path][metric] for path in paths for metric in ("acceptance", "kept_chars")},
            **{f"difference_{metric}": difference[metric] for metric in ("acceptance", "kept_chars")},
            **{f"{path}_compute_fraction": round((prompt_tokens + written[path]) * 2 * body / seconds[path] / peak, 3)
               for path in paths},
            "continuous_prefill_fraction": round(stats.prefill_tokens * 2 * body / stats.prefill_seconds / peak, 3),
            "continuous_step_bandwidth_fraction": round(weight_bytes * stats.steps / stats.step_seconds / memory, 3),
            "continuous_seconds": {"prefill": round(stats.prefill_seconds, 1), "steps": round(stats.step_seconds, 1),
                                   "total": round(seconds["continuous"], 1)},
            "continuous_steps": stats.steps, "continuous_rows_a_step": round(stats.step_rows / max(1, stats.steps), 1),
            "raw": {path: [[s.completion_id, s.file, s.accepted, s.kept, s.proposal] for s in results]
                    for path, results in scored.items()}}
    report("generation", figures)
    print(f"matmul peak {figures['matmul_peak_gflops']} GFLOP/s ({figures['precision']}), "
          f"bandwidth {figures['bandwidth_gb_s']} GB/s, {figures['threads']} threads")
    print(table(["workload: requests / files / sessions", "generate", "continuous", "ratio", "identical proposals",
                 "acceptance", "kept chars", "Δ kept chars [95%]", "compute bound: generate → continuous",
                 "continuous: prefill of bound, steps of bandwidth"],
                [[f"{n}: {w['requests']} / {w['files']} / {w['sessions']}", f"{w['generate_proposals_per_s']}/s",
                  f"{w['continuous_proposals_per_s']}/s", f"{w['ratio']}×", f"{w['identical']}/{w['requests']}",
                  f"{w['generate_acceptance'][0]:.1%} → {w['continuous_acceptance'][0]:.1%}",
                  f"{w['generate_kept_chars'][0]:.2f} → {w['continuous_kept_chars'][0]:.2f}",
                  "{:+.2f} [{:+.2f}, {:+.2f}]".format(*w["difference_kept_chars"]),
                  f"{w['generate_compute_fraction']:.0%} → {w['continuous_compute_fraction']:.0%}",
                  f"{w['continuous_prefill_fraction']:.0%}, {w['continuous_step_bandwidth_fraction']:.0%}"]
                 for n, w in figures["workloads"].items()]))


if __name__ == "__main__":
    main()
