"""Training throughput: tokens/s and peak memory of a LoRA step on the embedded default model.

    python benchmarks/training.py                  # 8 steps a variant, batch 8, LoRA r=16, CPU
    python benchmarks/training.py --steps 20 --device-note "H100"   (on a GPU machine: bf16)

Examples are cut from the training-split files of the demo corpus (shaped like refined targets:
a prompt of up to 192 tokens, a target of 1–4 lines). Each variant runs in a fresh process:
the baseline (batches in random order: padded to their longest example), the trainer's default
(batches of similar lengths), and the default with gradient checkpointing. Tokens are real tokens
(padding left out); the first step (warm-up) is not counted; medians over the steps. Appends the
figures to benchmarks/out/training.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import report

VARIANTS = {
    "random_batches (baseline)": {"bucket_by_length": False},
    "length_buckets (default)": {},
    "length_buckets + gradient_checkpointing": {"gradient_checkpointing": True},
}


def run_variant(overrides: dict, steps: int, precision: str) -> dict:
    from echo_dagster import env
    from echo_dagster.corpus import DEFAULT_CORPUS
    from echo_dagster.training.repository import repository_examples
    from echo_dagster.training.trainer import TrainSettings, train

    examples = repository_examples(DEFAULT_CORPUS, 400, seed=0)
    settings = TrainSettings(max_steps=steps, save_every=10_000, precision=precision, **overrides)
    marks = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train(env.base_model(), env.models_cache(), examples, Path(tmp) / "w", Path(tmp) / "o",
                       settings, lambda p: marks.append((time.perf_counter(), p.step)))
        total = time.perf_counter() - start
    step_s = [b[0] - a[0] for a, b in zip(marks, marks[1:])]  # from the second step on
    tokens_per_step = result.tokens / result.steps
    status = Path("/proc/self/status").read_text()
    peak = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024
    return {"step_s_median": round(statistics.median(step_s), 2), "tokens_per_step": round(tokens_per_step),
            "tokens_per_s": round(tokens_per_step / statistics.median(step_s), 1),
            "final_loss": round(result.final_loss, 3), "first_loss": round(result.losses[0], 3),
            "total_s_incl_load_and_save": round(total, 1), "peak_mb": round(peak)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--device-note", default="this machine's CPU (2 cores)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(VARIANTS[args.variant], args.steps, args.precision)))
        return
    figures = {}
    for name in VARIANTS:
        done = subprocess.run([sys.executable, __file__, "--variant", name, "--steps", str(args.steps),
                               "--precision", args.precision], check=True, capture_output=True, text=True)
        figures[name] = json.loads(done.stdout.splitlines()[-1])
    baseline = figures["random_batches (baseline)"]["tokens_per_s"]
    for f in figures.values():
        f["ratio_to_baseline"] = round(f["tokens_per_s"] / baseline, 2)
    report("training", {"device": args.device_note, "model": "smollm2-135m", "lora_r": 16, "batch_size": 8,
                        "steps": args.steps, "variants": figures})


if __name__ == "__main__":
    main()
