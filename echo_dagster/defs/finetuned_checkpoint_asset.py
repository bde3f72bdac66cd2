import time
from dataclasses import asdict
from typing import Literal

import dagster as dg
from pydantic import Field
from tqdm import tqdm

from echo_dagster import env, tenancy
from echo_dagster.corpus import DEFAULT_CORPUS
from echo_dagster.defs.filtered_dataset_asset import filtered_dataset
from echo_dagster.defs.resources import ModelRegistry, Warehouse
from echo_dagster.filters.decontaminate import decontaminate, eval_targets
from echo_dagster.training import window
from echo_dagster.training.examples import data_hash
from echo_dagster.training.publish import Published, base_for, train_and_publish
from echo_dagster.training.repository import repository_examples
from echo_dagster.training.trainer import Progress, TrainSettings, eta_text

_DEFAULTS = TrainSettings()


# The Launchpad's YAML: every choice a word that YAML reads as that word (YAML 1.1 reads `no`, `on`,
# `yes` as booleans, and the asset Launchpad re-writes the defaults without quotes).
class TrainerConfig(dg.Config):
    """The trainer's knobs, shared by both training assets (`training.trainer.TrainSettings`)."""

    start_from: Literal["base", "champion"] = Field(
        default="base", description="base: the base model; champion: the current champion (the base when there is "
                                    "none).")
    # A default, not a factory: the Launchpad shows it.
    base_model: str = Field(default=env.base_model(), description="Model spec of the base (see README, 'The model "
                                                                "runtime').")
    method: Literal["lora", "full"] = Field(default=_DEFAULTS.method, description="lora (peft) or full (every "
                                                                                   "weight).")
    lora_r: int = Field(default=_DEFAULTS.lora_r, description="LoRA rank.")
    lora_alpha: int = Field(default=_DEFAULTS.lora_alpha, description="LoRA scaling (alpha / r multiplies the update).")
    lora_dropout: float = Field(default=_DEFAULTS.lora_dropout, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(default=list(_DEFAULTS.target_modules),
                                      description="Modules that get LoRA adapters (attention and MLP projections by "
                                                  "default).")
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
    bucket_by_length: bool = Field(default=_DEFAULTS.bucket_by_length,
                                   description="Batch examples of similar lengths (less padding).")
    epochs: int = Field(default=_DEFAULTS.epochs, description="Passes over the examples.")
    max_steps: int = Field(default=_DEFAULTS.max_steps, description="Stop after this many steps (0: no limit).")
    context_tokens: int = Field(default=_DEFAULTS.context_tokens, description="Prompt budget, as in generation.")
    max_target_tokens: int = Field(default=_DEFAULTS.max_target_tokens, description="Target tokens kept an example.")
    seed: int = Field(default=_DEFAULTS.seed, description="Seeds the sample, the batch order and the weights.")
    save_every: int = Field(default=_DEFAULTS.save_every, description="Save resumable state every K steps.")
    gradient_checkpointing: bool = Field(default=_DEFAULTS.gradient_checkpointing,
                                         description="Less memory, about 25% slower.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default=_DEFAULTS.precision, description="auto: bf16 where the processor computes it (a GPU that has it, a "
                                                 "CPU with AVX-512 BF16), else fp32.")

    def settings(self, max_tokens: int = 0) -> TrainSettings:
        return TrainSettings(**{k: getattr(self, k) for k in asdict(_DEFAULTS) if k in type(self).model_fields}
                             | {"target_modules": tuple(self.target_modules), "max_tokens": max_tokens})


class TrainConfig(TrainerConfig):
    """Which harvested examples the Echo checkpoint trains on, and how."""

    days: int = Field(default=0, description="Train on the last N daily partitions that hold training examples "
                                             "(0: all of them).")
    max_examples: int = Field(default=0, description="At most this many examples, a stable random sample (0: all).")
    replay_share: float = Field(default=0.0, description="Add older examples (before the window), as a share of "
                                                         "the window's, to limit forgetting.")
    min_examples: int = Field(default=16, description="Fewer examples than this: no training, a skip with counts.")
    tenant: str = Field(default="", description="Empty: the pooled model, on the rows of tenants whose policy is "
                                                "pooled. A tenant id: that tenant's own model (its policy must be "
                                                "own), on its rows alone.")


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
    Too few examples: a skip that states the counts. Whose rows it trains on follows each tenant's
    policy (`tenancy`): the pooled model, or one tenant's own (config `tenant`)."""
    registry = models.registry()
    policy, tenant = tenancy.load(env.tenant_policy_path()), config.tenant or None
    with warehouse.connect(read_only=True) as con:
        data = window.load(con, window.Window(config.days, config.max_examples, config.replay_share, config.seed),
                           window.tenant_filter(policy, tenant))
    if len(data.examples) < config.min_examples:
        context.log.warning(f"Not training: {len(data.examples)} training examples in the window "
                            f"(days={config.days}), fewer than min_examples={config.min_examples}.")
        return
    context.log.info(f"{len(data.examples)} examples ({data.replayed} replayed) of "
                     f"{len(data.rows_per_partition)} partitions; {data.decontaminated} left out, their target "
                     "equal or near to an eval target.")
    data_meta = {"cutoff": data.cutoff.isoformat(), "examples": len(data.examples), "replayed": data.replayed,
                 "decontaminated": data.decontaminated,
                 "rows_per_partition": data.rows_per_partition, "rows_per_tenant": data.rows_per_tenant,
                 "hash": data.hash}
    prefix = f"echo-{tenant}-{data.cutoff.isoformat()}" if tenant else f"echo-{data.cutoff.isoformat()}"
    yield _train(context, config, registry, data.examples, "echo", prefix, data_meta, tenant=tenant,
                 shown={"tenants": dg.MetadataValue.md(tenant_table(policy, data.rows_per_tenant))})


def tenant_table(policy: tenancy.TenantPolicy, rows: dict[str, int]) -> str:
    """Each tenant's policy and the examples it gave this checkpoint, for the UI."""
    tenants = sorted(set(policy.tenants) | set(rows))
    lines = [f"| {t} | {policy.of(t)} | {rows.get(t, 0)} |" for t in tenants]
    return "\n".join(["| tenant | policy | examples trained on |", "| --- | --- | --- |",
                      f"| (default) | {policy.default} | |", *lines])


class RepositoryTrainConfig(TrainerConfig):
    """Which repository files the baseline trains on, and how."""

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
def repository_checkpoint(context: dg.AssetExecutionContext, config: RepositoryTrainConfig, models: ModelRegistry,
                          warehouse: Warehouse):
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
    with warehouse.connect(read_only=True) as con:
        examples, removed = decontaminate(repository_examples(config.source, config.examples, config.seed),
                                          eval_targets(con))
    digest = data_hash([(e["completion_id"], e["target"]) for e in examples])
    context.log.info(f"{len(examples)} examples of {config.source} ({removed} left out: equal or near to an eval "
                     f"target), {budget} tokens.")
    data_meta = {"source": config.source, "examples": len(examples), "token_budget": budget, "hash": digest,
                 "decontaminated": removed}
    yield _train(context, config, registry, examples, "repository", f"repo-{time.strftime('%Y-%m-%d')}", data_meta,
                 max_tokens=budget)


def _train(context: dg.AssetExecutionContext, config: TrainerConfig, registry, examples: list[dict], kind: str,
           prefix: str, data: dict, max_tokens: int = 0, tenant: str | None = None,
           shown: dict | None = None) -> dg.MaterializeResult:
    """`shown`: more metadata for the UI."""
    base, champion = base_for(registry, config.start_from, config.base_model, tenant)
    bar = tqdm(desc=prefix, unit="step")

    def on_step(p: Progress) -> None:
        bar.total = p.total
        bar.update(p.step - bar.n)
        bar.set_postfix(loss=f"{p.loss:.3f}", tok_s=f"{p.tokens_per_s:.0f}")
        if p.step % max(1, p.total // 50) == 0 or p.step == p.total:
            context.log.info(f"step {p.step}/{p.total} loss {p.loss:.4f} {p.tokens_per_s:.0f} tokens/s "
                             f"ETA {eta_text(p.eta_s)}")

    context.log.info(f"Training {prefix} from {base}.")
    published = train_and_publish(registry, examples, kind=kind, prefix=prefix, data=data, base=base,
                                  champion=champion, settings=config.settings(max_tokens),
                                  run_config=config.model_dump(), work_root=env.echo_home() / "training",
                                  models_dir=env.models_cache(), on_step=on_step, tenant=tenant)
    bar.close()
    return dg.MaterializeResult(metadata=_metadata(published, len(examples)) | {"trained_for": tenant or "pooled"}
                                | (shown or {}))


def _number(value) -> dg.MetadataValue:
    # Numbers every time (NaN for none), so that the UI plots each across checkpoints.
    return dg.MetadataValue.float(float(value) if value is not None else float("nan"))


def _metadata(published: Published, examples: int) -> dict:
    result, data = published.result, published.meta["data"]
    return {"name": published.name, "address": published.address, "examples": examples, "steps": result.steps,
            "resumed_from": result.resumed_from or 0, "final_loss": _number(result.final_loss),
            "base_validation_loss": _number(result.base_validation_loss),
            "best_validation_loss": _number(result.best_validation_loss), "best_step": result.best_step,
            "stopped_early": result.stopped_early, "precision": result.precision, "tokens": result.tokens,
            "tokens_per_s": _number(round(result.tokens / result.seconds) if result.seconds else None),
            "data_hash": data["hash"]} | ({"data_cutoff": data["cutoff"]} if "cutoff" in data else {}) \
        | ({"decontaminated": data["decontaminated"]} if "decontaminated" in data else {})
