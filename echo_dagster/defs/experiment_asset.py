import time
from typing import Literal

import dagster as dg
from pydantic import Field

from echo_dagster import env
from echo_dagster.defs.finetuned_checkpoint_asset import TrainerConfig
from echo_dagster.experiment.arms import ARMS
from echo_dagster.experiment.run import LABELS, ExperimentSpec, run_experiment

_SPEC = ExperimentSpec(base_model="")


class ExperimentConfig(TrainerConfig):
    """The experiment's size; the trainer's knobs (every arm the same) as train_job's."""

    start_from: Literal["base"] = Field(default="base", description="Every arm trains from the base model.")
    source: str = Field(default=_SPEC.source, description="The code the simulated developers write: packages "
                                                          "or folders, comma-separated (several: enough held-out "
                                                          "files for intervals that resample files to decide).")
    days: int = Field(default=_SPEC.days, description="Simulated days.")
    users: int = Field(default=_SPEC.users, description="Simulated developers.")
    eval_users: int = Field(default=_SPEC.eval_users, description="Of them, those who write held-out files (the "
                                                                  "eval set's rows).")
    sessions_per_user_day: int = Field(default=_SPEC.sessions_per_user_day, description="Sessions a developer a day.")
    eval_rows: int = Field(default=_SPEC.eval_rows, description="Held-out rows scored (at most).")
    replay_completions: int = Field(default=_SPEC.replay_completions, description="Completions of the replay A/B.")
    humaneval_lines: int = Field(default=_SPEC.humaneval_lines, description="HumanEval line tasks of the "
                                                                            "forgetting guard (0: none).")
    stdlib_lines: int = Field(default=_SPEC.stdlib_lines, description="Standard-library completions of the "
                                                                      "forgetting guard.")
    repository_examples: int = Field(default=_SPEC.repository_examples,
                                     description="Examples cut from repository files for each repository arm.")
    max_passes: int = Field(default=_SPEC.max_passes, description="The most passes an arm makes over its data "
                                                                  "(Echo's tokens are the other budget).")
    arms: list[str] = Field(default=list(_SPEC.arms), description="The arms trained and measured beside the base "
                                                                 "(echo is always one), of "
                                                                 + ", ".join(ARMS) + ".")
    preference_learning_rate: float = Field(default=_SPEC.preference_learning_rate,
                                            description="Peak learning rate of the preference arm's DPO.")
    seed: int = Field(default=_SPEC.seed, description="Seeds the simulation, the samples and the training.")
    resume: str = Field(default="", description="An unfinished run's folder (its name under "
                                                "$ECHO_HOME/experiments, or a path) of the same config: its "
                                                "simulation and trained arms are reused, every model measured again.")


@dg.asset(
    group_name="experiment",
    kinds={"pytorch", "python"},
    owners=["team:echo"],
    pool="gpu",
)
def experiment_report(context: dg.AssetExecutionContext, config: ExperimentConfig) -> dg.MaterializeResult:
    """The loop at a size that decides, with the arms that say why: simulated days of a corpus (the
    default, or several languages at once: `by_language` gives each its figures) harvested; Echo,
    naive logs (accepted proposals as shown), untrimmed and unfiltered final states, repository
    files and repository files cut like completions, each trained from the base with Echo's token
    budget and at most `max_passes` passes (and, when asked, Echo + DPO on the
    pairs of kept code and rejected proposal); every model on the same held-out rows, paired against
    the base and against Echo with intervals resampling files; the gate on Echo (kept characters
    per request). All of it under $ECHO_HOME/experiments/<time>/, its
    own landing zone, warehouse and registry; `resume` goes on with such a folder's run."""
    spec = ExperimentSpec(
        base_model=config.base_model, source=config.source, days=config.days, users=config.users,
        eval_users=config.eval_users, sessions_per_user_day=config.sessions_per_user_day, eval_rows=config.eval_rows,
        replay_completions=config.replay_completions, humaneval_lines=config.humaneval_lines,
        stdlib_lines=config.stdlib_lines, repository_examples=config.repository_examples, max_passes=config.max_passes,
        arms=tuple(config.arms), preference_learning_rate=config.preference_learning_rate, train=config.settings(),
        seed=config.seed)
    experiments = env.echo_home() / "experiments"
    folder = experiments / (config.resume or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    result = run_experiment(spec, folder, env.models_cache(), log=context.log.info, resume=bool(config.resume))
    metadata = {"report": dg.MetadataValue.path(str(result.page)), "promoted": result.verdict.promote,
                "gate": dg.MetadataValue.md(f"**{'Promoted' if result.verdict.promote else 'Not promoted'}**: "
                                            + "; ".join(result.verdict.reasons)),
                "comparison": dg.MetadataValue.md(result.table()),
                "by_language": dg.MetadataValue.md(result.languages()), "completions": result.simulation["completions"],
                "eval_rows": len(result.results[0].scored), "eval_files": result.results[0].summary["files"],
                "eval_sessions": result.results[0].summary["sessions"], "minutes": round(sum(result.seconds.values()) / 60, 1)}
    for r in result.results:  # plotted across runs
        metadata[f"kept_chars/{r.arm.roles[0]}"] = dg.MetadataValue.float(round(r.summary["kept_chars"][0], 4))
        metadata[f"acceptance/{r.arm.roles[0]}"] = dg.MetadataValue.float(round(r.summary["acceptance"][0], 4))
    context.log.info("\n" + result.table())
    return dg.MaterializeResult(metadata=metadata | {"arms": ", ".join(LABELS[r.arm.roles[0]] for r in result.results)})
