"""Training throughput: the trainer against the one it replaced, in one run, at equal steps, with the
held-out loss each reaches.

    python benchmarks/training.py                  # 24 steps a variant, ~15 minutes here
    python benchmarks/training.py --steps 40 --device-note "H200"   (on a GPU: bf16)

Variants, each in a fresh process, each from the base on the same examples and batches (cut from
the training split of the default corpus, shaped like refined targets: a prompt of up to 192 tokens,
a target of 1–4 lines), LoRA r=16 on the attention projections, batch 8, lr 3e-4:

* **before** — the trainer as it was: the Hugging Face model's own loss (logits at every position),
  fp32, two warmup steps and no gradient clipping (the trainer now warms up over a tenth of the
  steps and clips at 1.0, which moves the held-out loss a little as well);
* **loss on targets** — hidden states for every position, the vocabulary projection only where the
  loss is taken, fp32;
* **+ bf16** — the same under bf16 autocast where the processor computes it (`precision: auto`);
* **+ top 15 layers** — LoRA only on the top half of the layers: backward stops below them;
* **defaults** — `TrainSettings()` as it is now (what the sweep chose).

Tokens are real tokens (padding left out); the first step (warm-up) is not counted; tokens/s are
over the steps. The held-out loss (the loss on target tokens of held-out files) is measured in fp32
after the last step, on the same examples for every variant. Appends the figures to
benchmarks/out/training.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from report import report, table

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
REFERENCE = {"target_modules": ATTENTION, "learning_rate": 3e-4, "lora_r": 16, "lora_alpha": 32, "batch_size": 8}
VARIANTS = {
    "before (HF loss, fp32)": None,
    "loss on targets (fp32)": {**REFERENCE, "precision": "fp32"},
    "loss on targets + bf16": {**REFERENCE, "precision": "auto"},
    "loss on targets + bf16 + top 15 layers": {**REFERENCE, "precision": "auto", "lora_layers": 15},
    "defaults": {},
}


def _data(examples: int):
    from echo_dagster.corpus import DEFAULT_CORPUS
    from echo_dagster.training.repository import repository_examples
    from echo_dagster.training.trainer import split_validation

    train_rows, held_out = split_validation(repository_examples(DEFAULT_CORPUS, examples, seed=0), 0.1, seed=0)
    return train_rows, held_out[:96]


def run_variant(name: str, steps: int, examples: int) -> dict:
    from echo_dagster import env
    from echo_dagster.training.trainer import TrainSettings, train

    train_rows, held_out = _data(examples)
    if VARIANTS[name] is None:
        return _before(train_rows, held_out, steps)
    marks = []
    settings = replace(TrainSettings(), **VARIANTS[name]) if VARIANTS[name] else TrainSettings()
    # The same batches as the reference, no held-out slice of its own (measured after, as for it).
    settings = replace(settings, max_steps=steps, epochs=10, save_every=10_000, validation_share=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(env.base_model(), env.models_cache(), train_rows, Path(tmp) / "w", Path(tmp) / "o", settings,
                       lambda p: marks.append((time.perf_counter(), p.step)))
        loss = _held_out_loss(Path(tmp) / "o" / "merged", held_out, settings)
    return _figures(marks, result.tokens, result.steps, loss, result.precision)


def _before(train_rows: list[dict], held_out: list[dict], steps: int) -> dict:
    """The trainer's step as it was before the loss on targets: the model's own loss, fp32."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import get_linear_schedule_with_warmup

    from echo_dagster import env
    from echo_dagster.model.loading import load_model
    from echo_dagster.training.examples import batches, collate, encode_rows
    from echo_dagster.training.trainer import TrainSettings

    torch.manual_seed(0)
    loaded = load_model(env.base_model(), env.models_cache(), device="auto")  # where the trainer would run
    settings = replace(TrainSettings(), **REFERENCE, precision="fp32")
    model = get_peft_model(loaded.model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                                    target_modules=list(ATTENTION), task_type="CAUSAL_LM"))
    tokenizer = loaded.tokenizer
    encoded = encode_rows(tokenizer, train_rows, context_tokens=settings.context_tokens,
                          max_target_tokens=settings.max_target_tokens)
    plan = [b for epoch in range(10) for b in batches(encoded, 8, settings.seed + epoch)][:steps]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    scheduler = get_linear_schedule_with_warmup(optimizer, 2, steps)
    model.train()
    marks, tokens = [], 0
    for n, batch in enumerate(plan):
        batch = {k: v.to(loaded.model.device) for k, v in collate(batch, tokenizer.pad_token_id).items()}
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        tokens += int(batch["attention_mask"].sum())
        marks.append((time.perf_counter(), n + 1))
    with tempfile.TemporaryDirectory() as tmp:
        model.merge_and_unload().save_pretrained(Path(tmp) / "merged")
        tokenizer.save_pretrained(Path(tmp) / "merged")
        loss = _held_out_loss(Path(tmp) / "merged", held_out, settings)
    return _figures(marks, tokens, len(plan), loss, "fp32")


def _held_out_loss(folder: Path, held_out: list[dict], settings) -> float:
    from accelerate import Accelerator

    from echo_dagster import env
    from echo_dagster.model.loading import load_model
    from echo_dagster.training.examples import encode_rows
    from echo_dagster.training.trainer import validation_loss

    loaded = load_model(str(folder), env.models_cache(), device="auto")
    encoded = encode_rows(loaded.tokenizer, held_out, context_tokens=settings.context_tokens,
                          max_target_tokens=settings.max_target_tokens)
    return validation_loss(loaded.model, encoded, 8, loaded.tokenizer.pad_token_id,
                           Accelerator(cpu=loaded.model.device.type == "cpu"))


def _figures(marks: list, tokens: int, steps: int, loss: float, precision: str) -> dict:
    seconds = marks[-1][0] - marks[0][0]  # from the end of the first step: its warm-up not counted
    per_step = tokens / steps
    return {"tokens_per_s": round(per_step * (steps - 1) / seconds, 1), "tokens_per_step": round(per_step),
            "held_out_loss": round(loss, 4), "precision": precision, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--examples", type=int, default=1_600)
    parser.add_argument("--device-note", default="this machine's CPU (2 cores)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.steps, args.examples)))
        return
    figures = {}
    for name in VARIANTS:
        done = subprocess.run([sys.executable, __file__, "--variant", name, "--steps", str(args.steps),
                               "--examples", str(args.examples)], check=True, capture_output=True, text=True)
        figures[name] = json.loads(done.stdout.splitlines()[-1])
        print(name, figures[name], flush=True)
    before = figures["before (HF loss, fp32)"]["tokens_per_s"]
    for f in figures.values():
        f["ratio_to_before"] = round(f["tokens_per_s"] / before, 2)
    report("training", {"device": args.device_note, "model": "smollm2-135m", "steps": args.steps, "variants": figures})
    print(table(["variant", "tokens/s", "ratio to before", "held-out loss", "precision"],
                [[n, f["tokens_per_s"], f"{f['ratio_to_before']}×", f["held_out_loss"], f["precision"]]
                 for n, f in figures.items()]))


if __name__ == "__main__":
    main()
