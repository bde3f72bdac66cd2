from typing import Literal

import dagster as dg
from pydantic import Field

from echo_dagster import env, tenancy
from echo_dagster.corpus import DEFAULT_CORPUS
from echo_dagster.defs.finetuned_checkpoint_asset import finetuned_checkpoint, repository_checkpoint
from echo_dagster.defs.resources import ModelRegistry, Warehouse
from echo_dagster.evaluation import gate, offline, promotion, report
from echo_dagster.evaluation.suite import ROLES, SuiteSettings, by_role
from echo_dagster.model.generation import GenerationConfig
from echo_dagster.training import window

_GATE = gate.GateSettings()
_GENERATION = GenerationConfig()


class EvalConfig(dg.Config):
    # A default, not a factory: the Launchpad shows it.
    base_model: str = Field(default=env.base_model(), description="The base model's spec, measured as the baseline "
                                                                "(and the champion while none is).")
    max_rows: int = Field(default=300, description="Held-out rows of the eval set to score (a stable sample).")
    replay_completions: int = Field(default=120, description="Completions of the replay A/B on held-out files, "
                                                             "per model (0: no replay).")
    replay_source: str = Field(default=DEFAULT_CORPUS, description="The code the replay A/B replays (its "
                                                                   "eval-split files).")
    replay_users: int = Field(default=4, description="Simulated developers of the replay A/B.")
    replay_seed: int = Field(default=1, description="Seeds the replay's sessions: every model gets the same.")
    humaneval_lines: int = Field(default=SuiteSettings.humaneval_lines,
                                 description="HumanEval line tasks of the forgetting guard, drawn from all 164 "
                                             "problems' solutions (0: none, and take 'humaneval' out of guards).")
    stdlib_lines: int = Field(default=SuiteSettings.stdlib_lines,
                              description="Standard-library completions of the forgetting guard (0: none, and take "
                                          "'stdlib' out of guards).")
    context_tokens: int = Field(default=_GENERATION.context_tokens, description="Prompt budget, as when serving.")
    batch_size: int = Field(default=_GENERATION.batch_size, description="Prompts generated at once.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default=_GENERATION.precision, description="Of the weights while generating; auto: bf16 where the processor "
                                                   "computes it, else fp32. Every model is measured the same way.")
    min_kept_gain: float = Field(default=_GATE.min_kept_gain,
                                 description="Kept characters per request the challenger must gain over the "
                                             "champion (and the interval of the gain must lie above zero).")
    max_acceptance_loss: float = Field(default=_GATE.max_acceptance_loss,
                                       description="Acceptance must be non-inferior: the low end of the interval of "
                                                   "its change above minus this (0.03 = 3 points).")
    min_files: int = Field(default=_GATE.min_files,
                           description="Held-out files the rows must come from: with fewer, an interval over "
                                       "files cannot decide and the promotion is refused.")
    guards: list[str] = Field(default=list(_GATE.guards),
                              description="Forgetting guards that must hold (humaneval, stdlib); a configured guard "
                                          "without data refuses the promotion.")
    max_humaneval_drop: float = Field(default=_GATE.max_humaneval_drop,
                                      description="HumanEval line tasks' pass rate the challenger may lose "
                                                  "(0.02 = 2 points).")
    max_stdlib_drop: float = Field(default=_GATE.max_stdlib_drop,
                                   description="Kept characters on standard-library completions the challenger may "
                                               "lose, as a share of the champion's (0.1 = 10%).")
    confidence: float = Field(default=_GATE.confidence, description="Of the bootstrap intervals.")
    tenant: str = Field(default="", description="Empty: the pooled model's latest checkpoint, on the held-out rows "
                                                "of pooled tenants. A tenant id: that tenant's own latest "
                                                "checkpoint against its own champion, on its held-out rows alone.")
    resamples: int = Field(default=_GATE.resamples, description="Bootstrap resamples.")


@dg.asset(
    deps=[finetuned_checkpoint, repository_checkpoint],
    group_name="evaluation",
    kinds={"pytorch", "python"},
    owners=["team:echo"],
    pool="gpu",
    output_required=False,
    check_specs=[dg.AssetCheckSpec("promotion_gate", asset="eval_report",
                                   description="Passes when the challenger was promoted to champion; a warning "
                                               "with the reasons when it was not.")],
)
def eval_report(context: dg.AssetExecutionContext, config: EvalConfig, warehouse: Warehouse, models: ModelRegistry):
    """The latest Echo checkpoint (the challenger) against the base model, the champion and the
    repository-files baseline: scores on the held-out eval set, a replay A/B on held-out files, the
    forgetting guards (HumanEval line tasks, standard-library completions); then the promotion gate,
    which decides on kept characters per request with intervals resampling files. The report is written under
    $ECHO_HOME/reports/; every decision is recorded in the registry. Whose rows it measures on
    follows each tenant's policy (`tenancy`), as training does."""
    tenant = config.tenant or None
    with warehouse.connect(read_only=True) as con:
        rows = offline.held_out_rows(con, config.max_rows,
                                     tenants=window.tenant_filter(tenancy.load(env.tenant_policy_path()), tenant))
    if not rows:
        context.log.warning("Nothing to evaluate on: the eval set is empty (run harvest_job).")
        return
    settings = SuiteSettings(
        generation=GenerationConfig(context_tokens=config.context_tokens, batch_size=config.batch_size,
                                    precision=config.precision),
        replay=promotion.replay_spec(config.replay_source, config.replay_users, config.replay_completions,
                                     config.replay_seed),
        humaneval_lines=config.humaneval_lines, stdlib_lines=config.stdlib_lines, resamples=config.resamples)
    outcome = promotion.evaluate_challenger(
        models.registry(), rows, config.base_model, settings,
        gate.GateSettings(min_kept_gain=config.min_kept_gain, max_acceptance_loss=config.max_acceptance_loss,
                          min_files=config.min_files, guards=tuple(config.guards),
                          max_humaneval_drop=config.max_humaneval_drop, max_stdlib_drop=config.max_stdlib_drop,
                          confidence=config.confidence, resamples=config.resamples),
        env.models_cache(), env.echo_home() / "reports", config.model_dump(), log=context.log.info, tenant=tenant)
    if outcome is None:
        context.log.warning("Nothing to evaluate: the registry holds no Echo checkpoint (run train_job).")
        return
    verdict, built = outcome.verdict, outcome.report
    context.log.info(f"Report: {outcome.page}")
    context.log.info(f"Promotion gate: {'promoted' if verdict.promote else 'not promoted'} — "
                     + "; ".join(verdict.reasons))
    metadata = {
        "promoted": verdict.promote,
        # Markdown: the UI wraps it (a text value stays on one line, cut off).
        "gate": dg.MetadataValue.md(f"**{'Promoted' if verdict.promote else 'Not promoted'}**: "
                                    + "; ".join(verdict.reasons)),
        "report": dg.MetadataValue.path(str(outcome.page)),
        "kept_chars": _table(built.ui_tables[report.KEPT], _KEPT_HELP),
        "acceptance": _table(built.ui_tables[report.ACCEPTANCE], _ACCEPTANCE_HELP),
        "measures": _table(built.ui_tables[report.MEASURES], _MEASURES_HELP),
        "challenger": outcome.challenger, "evaluated_for": tenant or "pooled",
        "champion": outcome.challenger if verdict.promote else outcome.champion_before,
        "repository_baseline": outcome.repository or "(none: run baseline_job)",
        "eval_rows": len(rows), "eval_files": outcome.results[0].summary["files"],
        "eval_sessions": outcome.results[0].summary["sessions"], "decision": outcome.decision,
        "by_language": _table(built.ui_tables[report.BY_LANGUAGE]),
        "by_source_kind": _table(built.ui_tables[report.BY_SOURCE_KIND]),
        "chart_png": dg.MetadataValue.md(built.chart_markdown()),
        "figures": dg.MetadataValue.json(built.figures),
    }
    # Every role every time (NaN when a role has no model), so that the plots have no gaps.
    for role in ROLES:
        result = by_role(outcome.results, role)
        for measure in ("kept_chars", "acceptance"):
            metadata[f"{measure}/{role}"] = dg.MetadataValue.float(
                round(result.summary[measure][0], 4) if result is not None and result.summary.get("n")
                else float("nan"))
    yield dg.MaterializeResult(metadata=metadata, check_results=[dg.AssetCheckResult(
        check_name="promotion_gate", passed=verdict.promote, severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(verdict.reasons),
        metadata={k: v for k, v in verdict.figures.items() if isinstance(v, (int, float))})])


_KEPT_HELP = {
    "model": "the models measured, by role (their names: challenger, champion, repository_baseline)",
    "kept chars / request": "what the gate decides on: per held-out row, the characters of an accepted proposal "
                            "that match the code the user kept up to their first difference, 0 when rejected — "
                            "proposing less cannot raise it",
    "95% interval": "bootstrap interval resampling whole files (rows of one file are not independent)",
    "rows, files": "the held-out rows and the files they come from",
}
_ACCEPTANCE_HELP = {
    "model": "the models measured, by role: the challenger (the latest Echo checkpoint), the champion, the base "
             "model, the repository-files baseline; their names: challenger, champion, repository_baseline",
    "acceptance": "share of the held-out rows whose proposal a user would accept: not empty, edit similarity >= "
                  "0.8 with as many first lines of the target",
    "95% interval": "bootstrap interval of the acceptance, resampling files",
}
_MEASURES_HELP = {
    "measure": "exact match and ES: against the whole target ('k lines': against as many of its lines as the "
               "proposal has, the paper's version); line precision and recall: proposal lines equal to the target's; "
               "generation rate: characters of accepted proposals that survive in the targets, per target character; "
               "proposal chars: mean length of a proposal; replay: the replay A/B on held-out files; HumanEval lines "
               "pass: line tasks of HumanEval whose tests pass; stdlib kept chars: the forgetting guard on "
               "standard-library completions",
}


def _table(table: report.Table, help: dict[str, str] | None = None) -> dg.TableMetadataValue:
    """A report table as a table metadata value: the UI shows it inline, whatever its size."""
    header, rows = table
    help = help or {}
    schema = dg.TableSchema(columns=[dg.TableColumn(name, "string", description=help.get(name)) for name in header])
    return dg.MetadataValue.table(records=[dg.TableRecord(dict(zip(header, row))) for row in rows], schema=schema)
