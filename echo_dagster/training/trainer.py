"""Fine-tuning on refined targets: LoRA through peft (or every weight), a plain loop under
accelerate, resumable from its last saved step.

Training must not make the model worse: a slice of the examples' files is held out (by file, as
the eval split is, so nothing of a held-out file is trained on), its loss is measured before the
first step and every `eval_every` steps, the weights of the best step are kept, and training stops
once `patience` measurements in a row did not improve. Gradients are clipped; the learning rate
warms up over a share of the steps, then decays linearly.

The loss is computed only where it is taken — on the target tokens: the hidden states of every
position come from the model's body, the 49,152-wide vocabulary projection only from the target
positions (the prompt's logits and their gradients were most of a step's memory and a fifth of
its work).

The loop saves its state (weights being trained, optimizer, scheduler, random generators, the
best weights and the validation history) every `save_every` steps; the order of the batches
follows from the seed, so a run killed mid-way and started again on the same work folder
continues from the saved step with the same batches.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from echo_dagster.model.loading import load_model, resolve_folder, resolve_precision, split_spec
from echo_dagster.training import preference
from echo_dagster.training.examples import IGNORE, batches, collate, encode_rows, target_logits


@dataclass(frozen=True)
class TrainSettings:
    method: str = "lora"  # or "full": every weight, for users with the hardware
    # "sft": examples (prefix, suffix, target); "dpo": preference pairs (training.preference) — the
    # examples also hold `rejected`, the base is an SFT checkpoint, the method LoRA.
    objective: str = "sft"
    dpo_beta: float = 0.1
    dpo_sft_weight: float = 1.0  # of the kept code's token loss beside DPO's
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # Attention and MLP projections at 1e-3: the lowest held-out loss of benchmarks/training_sweep.py
    # (docs/benchmarks.md), level with full fine-tuning, with gradients and optimizer state for <4% of it.
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    lora_layers: int = 0  # adapt only the top N layers (0: all): backward stops below the lowest adapted one
    learning_rate: float = 1e-3
    warmup_share: float = 0.1  # of the steps, warming the learning rate up
    max_grad_norm: float = 1.0  # gradients clipped to this norm (0: no clipping)
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
    precision: str = "auto"  # bf16 autocast where the processor computes it (model.loading.resolve_precision)
    validation_share: float = 0.1  # of the files, held out to measure the loss while training (0: none)
    max_validation_examples: int = 256
    eval_every: int = 0  # steps between validation measurements (0: about ten a run)
    patience: int = 3  # measurements without improvement before stopping (0: never stop early)


@dataclass
class Progress:
    step: int
    total: int
    loss: float
    tokens_per_s: float
    eta_s: float


@dataclass
class TrainResult:
    steps: int  # taken (a run that stops early takes fewer than planned)
    resumed_from: int
    examples: int
    tokens: int  # trained on in this run (not counting steps done before a resume)
    seconds: float
    losses: list[float] = field(default_factory=list)
    validation: list[tuple[int, float]] = field(default_factory=list)  # (step, held-out loss); step 0: the base
    best_step: int = 0  # whose weights were saved
    stopped_early: bool = False
    validation_examples: int = 0
    precision: str = "fp32"

    @property
    def best_validation_loss(self) -> float | None:
        return dict(self.validation).get(self.best_step)

    @property
    def base_validation_loss(self) -> float | None:
        return dict(self.validation).get(0)

    @property
    def final_loss(self) -> float | None:
        tail = self.losses[-5:]
        return sum(tail) / len(tail) if tail else None


def train(base_spec: str, models_dir: str | Path, examples: list[dict], work_dir: str | Path, out_dir: str | Path,
          settings: TrainSettings = TrainSettings(), on_step: Callable[[Progress], None] | None = None) -> TrainResult:
    """Fine-tunes `base_spec` on `examples` (dicts with prefix, suffix, target, language, and path
    where known) and saves the checkpoint of the best validation step into `out_dir`: `adapter/`
    (LoRA only), `merged/` (a plain Hugging Face model with its tokenizer). `work_dir` keeps the
    resumable state."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    if settings.method not in ("lora", "full"):
        raise ValueError(f"method {settings.method!r}: expected 'lora' or 'full'")
    objective = _objective(settings)
    precision = resolve_precision(settings.precision)  # says what it expected when it is none of them
    accelerator = Accelerator(mixed_precision="bf16" if precision == "bf16" else "no",
                              cpu=not torch.cuda.is_available())
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
        layers = model.config.num_hidden_layers
        top = list(range(layers - settings.lora_layers, layers)) if 0 < settings.lora_layers < layers else None
        model = get_peft_model(model, LoraConfig(
            r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
            target_modules=list(settings.target_modules), layers_to_transform=top, task_type="CAUSAL_LM"))
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    train_rows, held_out = split_validation(examples, settings.validation_share, settings.seed)
    sizes = {"context_tokens": settings.context_tokens, "max_target_tokens": settings.max_target_tokens}
    encoded = objective.encode(tokenizer, train_rows, **sizes)
    validation = objective.encode(tokenizer, held_out[: settings.max_validation_examples], **sizes)
    if not encoded:
        raise ValueError("no training example holds a target token" if settings.objective == "sft" else
                         "no preference pair: every kept code encodes like its proposal")
    plan = [b for epoch in range(settings.epochs)
            for b in batches(encoded, settings.batch_size, settings.seed + epoch, settings.bucket_by_length)]
    if settings.max_tokens:
        # Cut before the schedule and the measurements are laid out: they must fit the steps the
        # budget allows, not the epochs asked for (else warmup and the first measurement come after it).
        plan = within_budget(plan, settings.max_tokens)
    total = min(len(plan), settings.max_steps) if settings.max_steps else len(plan)
    every = settings.eval_every or max(1, math.ceil(total / 10))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(settings.warmup_share * total), total)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    work = Path(work_dir)
    pad = tokenizer.pad_token_id
    tracker = _Best(accelerator.unwrap_model(model), settings.patience)
    start = _load_state(accelerator, work, settings, tracker)
    result = TrainResult(steps=total, resumed_from=start, examples=len(encoded), tokens=0, seconds=0.0,
                         validation_examples=len(validation), precision=precision)

    def measure(step: int) -> None:
        if validation:
            tracker.update(step, validation_loss(model, validation, settings.batch_size, pad, accelerator, objective))

    if start == 0:
        measure(0)  # the base model's held-out loss: a checkpoint is kept only where it beats it
    began = time.perf_counter()
    for step in range(start, total):
        model.train()
        batch = {k: v.to(accelerator.device) for k, v in objective.collate(plan[step], pad).items()}
        with accelerator.autocast():
            loss = objective.loss(model, batch)
        accelerator.backward(loss)
        if settings.max_grad_norm:
            accelerator.clip_grad_norm_(trainable, settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        result.tokens += int(batch["attention_mask"].sum())
        result.losses.append(float(loss.detach()))
        result.seconds = time.perf_counter() - began
        done = step + 1 - start
        if (step + 1) % every == 0 or step + 1 == total:
            measure(step + 1)
        if on_step:
            rate = result.tokens / result.seconds if result.seconds else 0.0
            on_step(Progress(step + 1, total, result.losses[-1], rate, result.seconds / done * (total - step - 1)))
        if tracker.exhausted:
            result.steps, result.stopped_early = step + 1, True
            break
        if (step + 1) % settings.save_every == 0 and step + 1 < total:
            _save_state(accelerator, work, step + 1, settings, tracker)
    model = accelerator.unwrap_model(model)
    tracker.restore(model)
    result.validation, result.best_step = list(tracker.history), tracker.best_step
    model.eval()
    _save_checkpoint(model, tokenizer, Path(out_dir), settings, resolve_folder(split_spec(base_spec)[0], models_dir))
    return result


def within_budget(plan: list[list], max_tokens: int) -> list[list]:
    """The batches up to the first whose tokens (padding left out) reach `max_tokens`."""
    seen = 0
    for n, batch in enumerate(plan):
        seen += sum(len(e) for e in batch)
        if seen >= max_tokens:
            return plan[: n + 1]
    return plan


def target_loss(model, batch: dict):
    """Mean cross-entropy over the target tokens, with logits computed only at the positions that
    predict them."""
    import torch

    logits, targets, _ = target_logits(model, batch)
    return torch.nn.functional.cross_entropy(logits, targets)


@dataclass(frozen=True)
class _Objective:
    encode: Callable  # (tokenizer, rows, context_tokens=, max_target_tokens=) -> examples
    collate: Callable  # (examples, pad id) -> a batch of tensors
    loss: Callable  # (model, batch) -> the loss
    weight: Callable  # (batch) -> what the batch weighs in the held-out mean


def _objective(settings: TrainSettings) -> _Objective:
    if settings.objective == "sft":
        return _Objective(encode_rows, collate, target_loss, lambda b: int((b["labels"][:, 1:] != IGNORE).sum()))
    if settings.objective == "dpo":
        if settings.method != "lora":
            raise ValueError("objective 'dpo' needs method 'lora': the reference is the base with the adapter off")
        return _Objective(preference.encode_pairs, preference.collate_pairs,
                          lambda model, batch: preference.dpo_loss(model, batch, settings.dpo_beta,
                                                                   settings.dpo_sft_weight),
                          lambda b: b["input_ids"].shape[0] // 2)
    raise ValueError(f"objective {settings.objective!r}: expected 'sft' or 'dpo'")


def validation_loss(model, examples: list, batch_size: int, pad: int, accelerator,
                    objective: _Objective | None = None) -> float:
    """The objective's mean loss on held-out examples (SFT: per target token)."""
    import torch

    objective = objective or _objective(TrainSettings())
    model.eval()
    total = weight = 0.0
    with torch.no_grad(), accelerator.autocast():
        for start in range(0, len(examples), batch_size):
            batch = {k: v.to(accelerator.device) for k, v in objective.collate(examples[start : start + batch_size],
                                                                                 pad).items()}
            n = objective.weight(batch)
            total += float(objective.loss(model, batch)) * n
            weight += n
    return total / weight


def split_validation(examples: list[dict], share: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(training, held out): whole files held out — a file's examples share most of their context,
    so a held-out example from a trained-on file would measure memory, not learning. Examples
    without a path are keyed by their id. No split when either side would be empty."""
    if share <= 0:
        return examples, []

    def held(row: dict) -> bool:
        key = f"validation:{seed}:{row.get('repo')}/{row.get('path') or row.get('completion_id')}"
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") < share * 2**32

    train_rows = [r for r in examples if not held(r)]
    held_out = [r for r in examples if held(r)]
    return (train_rows, held_out) if train_rows and held_out else (examples, [])


class _Best:
    """The validation history, the best step so far and a copy of its trainable weights."""

    def __init__(self, model, patience: int):
        self.model, self.patience = model, patience
        self.history: list[tuple[int, float]] = []
        self.best_step, self.best_loss, self.since_best = 0, math.inf, 0
        self.weights: dict | None = None

    def update(self, step: int, loss: float) -> None:
        self.history.append((step, loss))
        if loss < self.best_loss:
            self.best_step, self.best_loss, self.since_best = step, loss, 0
            self.weights = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
        else:
            self.since_best += 1

    @property
    def exhausted(self) -> bool:
        return bool(self.patience) and self.since_best >= self.patience

    def restore(self, model) -> None:
        """The best step's weights back into the model (the starting ones when no step beat them);
        without a validation slice the last step's stand."""
        if self.weights is None:
            return
        import torch

        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.requires_grad:
                    param.copy_(self.weights[name])

    def save(self, folder: Path) -> dict:
        if self.weights is not None:
            import torch

            torch.save(self.weights, folder / "best.pt")
        return {"history": self.history, "best_step": self.best_step, "best_loss": self.best_loss,
                "since_best": self.since_best}

    def load(self, folder: Path, state: dict) -> None:
        import torch

        self.history = [tuple(h) for h in state["history"]]
        self.best_step, self.best_loss, self.since_best = state["best_step"], state["best_loss"], state["since_best"]
        best = folder / "best.pt"
        self.weights = torch.load(best, weights_only=True) if best.is_file() else None


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


def _save_state(accelerator, work: Path, step: int, settings: TrainSettings, best: _Best) -> None:
    """Saved beside the last state, then swapped in: a kill during the save leaves the last one."""
    work.mkdir(parents=True, exist_ok=True)
    fresh, state, old = work / "state.new", work / "state", work / "state.old"
    shutil.rmtree(fresh, ignore_errors=True)
    accelerator.save_state(str(fresh))
    validation = best.save(fresh)
    (fresh / "step.json").write_text(json.dumps({"step": step, "settings": _fingerprint(settings),
                                                 "validation": validation}))
    shutil.rmtree(old, ignore_errors=True)
    if state.exists():
        os.replace(state, old)
    os.replace(fresh, state)
    shutil.rmtree(old, ignore_errors=True)


def _load_state(accelerator, work: Path, settings: TrainSettings, best: _Best) -> int:
    """The step to start from: that of the saved state, when one was saved with the same settings."""
    for folder in (work / "state", work / "state.old"):
        marker = folder / "step.json"
        if marker.is_file():
            saved = json.loads(marker.read_text())
            if saved["settings"] != _fingerprint(settings):
                raise ValueError(f"{folder} was saved by a run with other settings: remove it to start over")
            accelerator.load_state(str(folder))
            best.load(folder, saved["validation"])
            return int(saved["step"])
    return 0


def eta_text(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s" if math.isfinite(seconds) else "?"
