import json
import shutil
import subprocess
import time
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

import dagster as dg
from pydantic import Field
from tqdm import tqdm

from echo_dagster import home
from echo_dagster.defs.filtered_dataset_asset import filtered_dataset
from echo_dagster.defs.resources import ModelRegistry, Warehouse
from echo_dagster.model.loading import default_spec
from echo_dagster.simulate.sources import DEFAULT_CORPUS
from echo_dagster.training import window
from echo_dagster.training.examples import data_hash
from echo_dagster.training.repository import repository_examples
from echo_dagster.training.trainer import Progress, TrainSettings, eta_text, train

_DEFAULTS = TrainSettings()


class TrainConfig(dg.Config):
    days: int = Field(default=0, description="Train on the last N daily partitions that hold training examples "
                                             "(0: all of them).")
    max_examples: int = Field(default=0, description="At most this many examples, a stable random sample (0: all).")
    replay_share: float = Field(default=0.0, description="Add older examples (before the window), as a share of "
                                                         "the window's, to limit forgetting.")
    min_examples: int = Field(default=16, description="Fewer examples than this: no training, a skip with counts.")
    start_from: str = Field(default="base", description="'base': the base model; 'champion': the current champion "
                                                        "(the base when there is none).")
    base_model: str = Field(default_factory=default_spec, description="Model spec of the base (see README, "
                                                                      "'The model runtime').")
    method: str = Field(default=_DEFAULTS.method, description="'lora' (peft) or 'full' (every weight).")
    lora_r: int = Field(default=_DEFAULTS.lora_r, description="LoRA rank.")
    lora_alpha: int = Field(default=_DEFAULTS.lora_alpha, description="LoRA scaling (alpha / r multiplies the update).")
    lora_dropout: float = Field(default=_DEFAULTS.lora_dropout, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(default=list(_DEFAULTS.target_modules),
                                      description="Modules that get LoRA adapters (attention projections by default).")
    learning_rate: float = Field(default=_DEFAULTS.learning_rate, description="Peak learning rate (linear decay).")
    lora_layers: int = Field(default=_DEFAULTS.lora_layers, description="Adapt only the top N layers (0: all); "
                                                                        "backward stops below the lowest one.")
    warmup_share: float = Field(default=_DEFAULTS.warmup_share, description="Share of the steps the learning "
                                                                            "rate warms up over.")
    max_grad_norm: float = Field(default=_DEFAULTS.max_grad_norm, description="Gradients are clipped to this "
                                                                              "norm (0: no clipping).")
    validation_share: float = Field(default=_DEFAULTS.validation_share,
                                    description="Share of the examples' files held out to measure the loss while "
                                                "training; the best step's weights are kept (0: none).")
    eval_every: int = Field(default=_DEFAULTS.eval_every, description="Steps between validation measurements "
                                                                      "(0: about ten a run).")
    patience: int = Field(default=_DEFAULTS.patience, description="Validation measurements without improvement "
                                                                  "before training stops (0: never early).")
    batch_size: int = Field(default=_DEFAULTS.batch_size, description="Examples a step.")
    bucket_by_length: bool = Field(default=True, description="Batch examples of similar lengths (less padding).")
    epochs: int = Field(default=_DEFAULTS.epochs, description="Passes over the examples.")
    max_steps: int = Field(default=_DEFAULTS.max_steps, description="Stop after this many steps (0: no limit).")
    context_tokens: int = Field(default=_DEFAULTS.context_tokens, description="Prompt budget, as in generation.")
    max_target_tokens: int = Field(default=_DEFAULTS.max_target_tokens, description="Target tokens kept an example.")
    seed: int = Field(default=_DEFAULTS.seed, description="Seeds the sample, the batch order and the weights.")
    save_every: int = Field(default=_DEFAULTS.save_every, description="Save resumable state every K steps.")
    gradient_checkpointing: bool = Field(default=False, description="Less memory, about 25% slower.")
    precision: str = Field(default=_DEFAULTS.precision, description="'auto' (bf16 where the processor has it, "
                                                                    "else fp32), 'fp32' or 'bf16'.")


@dg.asset(
    deps=[filtered_dataset],
    group_name="training",
    kinds={"pytorch", "python"},
    owners=["team:echo"],
    pool="gpu",
    output_required=False,
)
def finetuned_checkpoint(context: dg.AssetExecutionContext, config: TrainConfig, warehouse: Warehouse,
                         models: ModelRegistry):
    """A model fine-tuned on the harvested training examples (view `training_examples`), registered
    in the model registry with `echo_meta.json`: what it was trained on, how, and how training went.
    Too few examples: a skip that states the counts."""
    registry = models.registry()
    with warehouse.connect(read_only=True) as con:
        data = window.load(con, window.Window(config.days, config.max_examples, config.replay_share, config.seed))
    if len(data.examples) < config.min_examples:
        context.log.warning(f"Not training: {len(data.examples)} training examples in the window "
                            f"(days={config.days}), fewer than min_examples={config.min_examples}.")
        return
    name = f"echo-{data.cutoff.isoformat()}"
    context.log.info(f"Training {name} on {len(data.examples)} examples ({data.replayed} replayed) of "
                     f"{len(data.rows_per_partition)} partitions.")
    data_meta = {"cutoff": data.cutoff.isoformat(), "examples": len(data.examples), "replayed": data.replayed,
                 "rows_per_partition": data.rows_per_partition, "hash": data.hash}
    yield train_and_register(context, config, registry, data.examples, "echo", name, data_meta)


class RepositoryTrainConfig(TrainConfig):
    source: str = Field(default=DEFAULT_CORPUS, description="A folder of code or an installed package: its "
                                                            "training-split files are the examples.")
    examples: int = Field(default=2_000, description="Examples cut from the files.")
    token_budget: int = Field(default=0, description="Tokens to train on (0: as many as the latest Echo "
                                                     "checkpoint trained on).")


@dg.asset(
    deps=[finetuned_checkpoint],
    group_name="baseline",
    kinds={"pytorch", "python"},
    owners=["team:echo"],
    pool="gpu",
    output_required=False,
)
def repository_checkpoint(context: dg.AssetExecutionContext, config: RepositoryTrainConfig, models: ModelRegistry):
    """The comparison arm: the same trainer on plain repository files of the training split, with
    the token budget of the latest Echo checkpoint — what experience data adds over static code."""
    registry = models.registry()
    budget = config.token_budget
    if not budget:
        latest = registry.latest("echo")
        if latest is None:
            context.log.warning("Not training: no Echo checkpoint yet to take the token budget from "
                                "(set token_budget).")
            return
        budget = latest["metrics"]["tokens"]
    examples = repository_examples(config.source, config.examples, config.seed)
    digest = data_hash([(e["completion_id"], e["target"]) for e in examples])
    name = f"repo-{time.strftime('%Y-%m-%d')}"
    context.log.info(f"Training {name} on {len(examples)} examples of {config.source}, {budget} tokens.")
    data_meta = {"source": config.source, "examples": len(examples), "token_budget": budget, "hash": digest}
    yield train_and_register(context, config, registry, examples, "repository", name, data_meta, max_tokens=budget)


def train_and_register(context: dg.AssetExecutionContext, config: TrainConfig, registry, examples: list[dict],
                       kind: str, name: str, data_meta: dict, max_tokens: int = 0) -> dg.MaterializeResult:
    """Trains (resuming a killed run of the same data and config), writes echo_meta.json, publishes
    under `name` and a hash of the data and the config: the same training has the same name."""
    champion = registry.champion() if config.start_from == "champion" else None
    base = str(registry.local(champion) / "merged") if champion else config.base_model
    settings = TrainSettings(**{k: getattr(config, k) for k in asdict(_DEFAULTS) if hasattr(config, k)}
                             | {"target_modules": tuple(config.target_modules), "max_tokens": max_tokens})
    name = f"{name}-{data_hash([(data_meta['hash'], base, json.dumps(asdict(settings), sort_keys=True))])[:10]}"
    work = home.echo_home() / "training" / name
    bar = tqdm(desc=name, unit="step")

    def on_step(p: Progress) -> None:
        bar.total = p.total
        bar.update(p.step - bar.n)
        bar.set_postfix(loss=f"{p.loss:.3f}", tok_s=f"{p.tokens_per_s:.0f}")
        if p.step % max(1, p.total // 50) == 0 or p.step == p.total:
            context.log.info(f"step {p.step}/{p.total} loss {p.loss:.4f} {p.tokens_per_s:.0f} tokens/s "
                             f"ETA {eta_text(p.eta_s)}")

    context.log.info(f"Checkpoint {name} from {base}.")
    result = train(base, home.echo_home() / "models", examples, work / "run", work / "checkpoint", settings, on_step)
    bar.close()
    meta = {
        "name": name, "kind": kind, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base_model": base, "started_from": "champion" if champion else "base", "champion_at_start": champion,
        "config": config.model_dump(), "data": data_meta, "code_version": _code_version(), "seed": config.seed,
        "metrics": {"steps": result.steps, "resumed_from": result.resumed_from, "examples_encoded": result.examples,
                    "tokens": result.tokens, "seconds": round(result.seconds, 1), "final_loss": result.final_loss,
                    "first_loss": result.losses[0] if result.losses else None},
    }
    (work / "checkpoint" / "echo_meta.json").write_text(json.dumps(meta, indent=2))
    address = registry.publish(work / "checkpoint", name)
    shutil.rmtree(work, ignore_errors=True)  # published; the resumable state is no longer needed
    return dg.MaterializeResult(metadata={
        "name": name, "address": address, "examples": len(examples), "steps": result.steps,
        "resumed_from": result.resumed_from, "final_loss": result.final_loss, "tokens": result.tokens,
        "tokens_per_s": round(result.tokens / result.seconds) if result.seconds else None,
        "data_hash": data_meta["hash"]} | ({"data_cutoff": data_meta["cutoff"]} if "cutoff" in data_meta else {}))


def _code_version() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, text=True,
                                capture_output=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"echo-dagster {version('echo-dagster')}" + (f" ({commit})" if commit else "")
