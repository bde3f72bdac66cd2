"""Fine-tuning on refined targets: LoRA through peft (or every weight), a plain loop under
accelerate, resumable from its last saved step.

The loop saves its state (weights being trained, optimizer, scheduler, random generators) every
`save_every` steps; the order of the batches follows from the seed, so a run killed mid-way and
started again on the same work folder continues from the saved step with the same batches.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from echo_dagster.model.loading import load_model, resolve_folder, split_spec
from echo_dagster.training.examples import batches, collate, encode


@dataclass(frozen=True)
class TrainSettings:
    method: str = "lora"  # or "full": every weight, for users with the hardware
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    learning_rate: float = 3e-4
    warmup_steps: int = 2
    batch_size: int = 8
    bucket_by_length: bool = True  # batches of similar lengths: less padding
    epochs: int = 1
    max_steps: int = 0  # 0: every batch of every epoch
    max_tokens: int = 0  # stop once this many tokens are trained on (0: no limit); a budget to compare runs
    context_tokens: int = 192  # the prompt budget generation uses
    max_target_tokens: int = 64
    seed: int = 0
    save_every: int = 10
    gradient_checkpointing: bool = False
    mixed_precision: str = "no"  # "bf16" on a GPU that has it


@dataclass
class Progress:
    step: int
    total: int
    loss: float
    tokens_per_s: float
    eta_s: float


@dataclass
class TrainResult:
    steps: int
    resumed_from: int
    examples: int
    tokens: int  # trained on in this run (not counting steps done before a resume)
    seconds: float
    losses: list[float] = field(default_factory=list)

    @property
    def final_loss(self) -> float | None:
        tail = self.losses[-5:]
        return sum(tail) / len(tail) if tail else None


def train(base_spec: str, models_dir: str | Path, examples: list[dict], work_dir: str | Path, out_dir: str | Path,
          settings: TrainSettings = TrainSettings(), on_step: Callable[[Progress], None] | None = None) -> TrainResult:
    """Fine-tunes `base_spec` on `examples` (dicts with prefix, suffix, target, language) and saves
    the checkpoint into `out_dir`: `adapter/` (LoRA only), `merged/` (a plain Hugging Face model with
    its tokenizer). `work_dir` keeps the resumable state."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    if settings.method not in ("lora", "full"):
        raise ValueError(f"method {settings.method!r}: expected 'lora' or 'full'")
    accelerator = Accelerator(mixed_precision=settings.mixed_precision, cpu=not torch.cuda.is_available())
    set_seed(settings.seed)
    try:
        loaded = load_model(base_spec, models_dir, device="cpu")
    except ValueError:
        raise  # a spec that names no model: its message says what was expected
    except Exception as error:
        raise ValueError(f"base model {base_spec} could not be loaded: {type(error).__name__}: {error}") from error
    model, tokenizer = loaded.model, loaded.tokenizer
    if settings.method == "lora":
        from peft import LoraConfig, get_peft_model

        if split_spec(base_spec)[1] is not None:
            model = model.merge_and_unload()  # a champion given as an adapter: train a new one on top
        model = get_peft_model(model, LoraConfig(
            r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
            target_modules=list(settings.target_modules), task_type="CAUSAL_LM"))
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    encoded = [e for e in (encode(tokenizer, x["prefix"], x["suffix"], x["target"], x["language"] or "",
                                  context_tokens=settings.context_tokens,
                                  max_target_tokens=settings.max_target_tokens) for x in examples) if e]
    if not encoded:
        raise ValueError("no training example holds a target token")
    plan = [b for epoch in range(settings.epochs)
            for b in batches(encoded, settings.batch_size, settings.seed + epoch, settings.bucket_by_length)]
    total = min(len(plan), settings.max_steps) if settings.max_steps else len(plan)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, min(settings.warmup_steps, total), total)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    work = Path(work_dir)
    start = _load_state(accelerator, work, settings)
    model.train()
    result = TrainResult(steps=total, resumed_from=start, examples=len(encoded), tokens=0, seconds=0.0)
    began = time.perf_counter()
    pad = tokenizer.pad_token_id
    for step in range(start, total):
        batch = {k: v.to(accelerator.device) for k, v in collate(plan[step], pad).items()}
        loss = model(**batch).loss
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        result.tokens += int(batch["attention_mask"].sum())
        result.losses.append(float(loss.detach()))
        result.seconds = time.perf_counter() - began
        done = step + 1 - start
        if on_step:
            rate = result.tokens / result.seconds if result.seconds else 0.0
            on_step(Progress(step + 1, total, result.losses[-1], rate, result.seconds / done * (total - step - 1)))
        if settings.max_tokens and result.tokens >= settings.max_tokens:
            result.steps = step + 1
            break
        if (step + 1) % settings.save_every == 0 and step + 1 < total:
            _save_state(accelerator, work, step + 1, settings)
    model = accelerator.unwrap_model(model)
    model.eval()
    _save_checkpoint(model, tokenizer, Path(out_dir), settings, resolve_folder(split_spec(base_spec)[0], models_dir))
    return result


def _save_checkpoint(model, tokenizer, out: Path, settings: TrainSettings, base_folder: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if settings.method == "lora":
        model.save_pretrained(out / "adapter")
        # Plain peft finds the base through adapter_config.json: point it at the local folder.
        config_path = out / "adapter" / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = str(base_folder.resolve())
        config_path.write_text(json.dumps(config, indent=2))
        tokenizer.save_pretrained(out / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(out / "merged")
    tokenizer.save_pretrained(out / "merged")


def _fingerprint(settings: TrainSettings) -> dict:
    return asdict(settings) | {"target_modules": list(settings.target_modules)}


def _save_state(accelerator, work: Path, step: int, settings: TrainSettings) -> None:
    """Saved beside the last state, then swapped in: a kill during the save leaves the last one."""
    work.mkdir(parents=True, exist_ok=True)
    fresh, state, old = work / "state.new", work / "state", work / "state.old"
    shutil.rmtree(fresh, ignore_errors=True)
    accelerator.save_state(str(fresh))
    (fresh / "step.json").write_text(json.dumps({"step": step, "settings": _fingerprint(settings)}))
    shutil.rmtree(old, ignore_errors=True)
    if state.exists():
        os.replace(state, old)
    os.replace(fresh, state)
    shutil.rmtree(old, ignore_errors=True)


def _load_state(accelerator, work: Path, settings: TrainSettings) -> int:
    """The step to start from: that of the saved state, when one was saved with the same settings."""
    for folder in (work / "state", work / "state.old"):
        marker = folder / "step.json"
        if marker.is_file():
            saved = json.loads(marker.read_text())
            if saved["settings"] != _fingerprint(settings):
                raise ValueError(f"{folder} was saved by a run with other settings: remove it to start over")
            accelerator.load_state(str(folder))
            return int(saved["step"])
    return 0


def eta_text(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s" if math.isfinite(seconds) else "?"
