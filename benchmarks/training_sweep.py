"""The sweep that chose the trainer's defaults: learning rate, LoRA rank and target modules (MLP
projections included) and full fine-tuning, on the default corpus.

    python benchmarks/training_sweep.py                 # 7 settings, 48 steps each, ~50 minutes here
    python benchmarks/training_sweep.py --steps 120 --only lora-attn-mlp-r16-1e-3

Every setting trains the embedded model from the base on the same examples (cut from the training
split of the default corpus, shaped like refined targets), with the trainer's validation slice (the
same held-out files for every setting): the held-out loss before training, at every 12 steps, and
at the best step — the loss on unseen files is what a default must lower. Each setting runs in a
fresh process. Appends the figures to benchmarks/out/training_sweep.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from report import report, table

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
ATTENTION_MLP = ATTENTION + ("gate_proj", "up_proj", "down_proj")
SETTINGS = {
    "lora-attn-r16-3e-4 (the old default)": {"target_modules": ATTENTION, "learning_rate": 3e-4},
    "lora-attn-r16-1e-3": {"target_modules": ATTENTION, "learning_rate": 1e-3},
    "lora-attn-mlp-r16-3e-4": {"target_modules": ATTENTION_MLP, "learning_rate": 3e-4},
    "lora-attn-mlp-r16-1e-3": {"target_modules": ATTENTION_MLP, "learning_rate": 1e-3},
    "lora-attn-mlp-r64-3e-4": {"target_modules": ATTENTION_MLP, "learning_rate": 3e-4, "lora_r": 64,
                               "lora_alpha": 128},
    "full-5e-5": {"method": "full", "learning_rate": 5e-5},
    "full-1e-4": {"method": "full", "learning_rate": 1e-4},
}


def run_setting(overrides: dict, steps: int, examples: int, validation: int) -> dict:
    from echo_dagster import env
    from echo_dagster.corpus import DEFAULT_CORPUS
    from echo_dagster.training.repository import repository_examples
    from echo_dagster.training.trainer import TrainSettings, train

    data = repository_examples(DEFAULT_CORPUS, examples, seed=0)
    settings = TrainSettings(max_steps=steps, epochs=10, eval_every=12, patience=0, save_every=10_000,
                             max_validation_examples=validation,
                             **overrides)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(env.base_model(), env.models_cache(), data, Path(tmp) / "w", Path(tmp) / "o", settings)
    return {"base_loss": round(result.base_validation_loss, 4), "best_loss": round(result.best_validation_loss, 4),
            "best_step": result.best_step, "curve": [(s, round(v, 4)) for s, v in result.validation],
            "tokens_per_s": round(result.tokens / result.seconds, 1), "precision": result.precision,
            "validation_examples": result.validation_examples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--examples", type=int, default=1_600)
    parser.add_argument("--validation", type=int, default=256, help="held-out examples measured every 12 steps")
    parser.add_argument("--only", action="append", help="run only these settings (repeatable)")
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setting:
        print(json.dumps(run_setting(SETTINGS[args.setting], args.steps, args.examples, args.validation)))
        return
    figures = {}
    for name in args.only or SETTINGS:
        done = subprocess.run([sys.executable, __file__, "--setting", name, "--steps", str(args.steps),
                               "--examples", str(args.examples),
                               "--validation", str(args.validation)], check=True, capture_output=True, text=True)
        figures[name] = json.loads(done.stdout.splitlines()[-1])
        print(name, figures[name]["best_loss"], flush=True)
    report("training_sweep", {"steps": args.steps, "examples": args.examples, "validation": args.validation,
                              "batch_size": 8, "settings": figures})
    print(table(["setting", "held-out loss: base", "best", "at step", "tokens/s"],
                [[n, f["base_loss"], f["best_loss"], f["best_step"], f["tokens_per_s"]] for n, f in figures.items()]))


if __name__ == "__main__":
    main()
