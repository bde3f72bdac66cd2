"""The experiment with power: the loop at a size that decides, and the arms that say why.

Simulated developers write a few days of code from the default corpus with the base model
proposing; the days are harvested (raw_sessions → refined_targets → filtered_dataset); each arm
(`experiment.arms`) is trained from the same base with the same token budget — Echo's; every model
is measured on the same held-out rows, the same replayed sessions and the same forgetting-guard
lines, and every arm is compared with the base and with Echo, paired, with 95% bootstrap intervals.
The Echo checkpoint then meets the promotion gate against the base. Everything lands in one folder:
landing zone, warehouse, registry, report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

from echo_dagster import warehouse
from echo_dagster.corpus import DEFAULT_CORPUS
from echo_dagster.evaluation import gate, offline, promotion, report
from echo_dagster.evaluation.suite import Arm, ArmResult, SuiteSettings, run_suite
from echo_dagster.experiment import arms
from echo_dagster.filters.partition import filter_partition
from echo_dagster.harvest.partition import refine_partition
from echo_dagster.ingest.raw_sessions import ingest_partition
from echo_dagster.landing import LocalLandingStore
from echo_dagster.model.generation import GenerationConfig, proposer
from echo_dagster.simulate.run import SimulationSpec, simulate
from echo_dagster.training.examples import data_hash
from echo_dagster.training.publish import train_and_publish
from echo_dagster.training.registry import Registry
from echo_dagster.training.repository import repository_examples
from echo_dagster.training.trainer import TrainSettings

LABELS = {"base": "base", "echo": "Echo", "naive_logs": "naive logs", "untrimmed": "untrimmed, unfiltered",
          "repository": "repository files", "preference": "Echo + DPO"}


@dataclass(frozen=True)
class ExperimentSpec:
    base_model: str
    source: str = DEFAULT_CORPUS
    start: date = date(2026, 1, 5)  # the simulated days; the experiment's own folder, so any days do
    # Sized to decide: ~2,300 completions, ~1,200 held-out rows (106 minutes on 2 CPU cores, 2026-11-29).
    days: int = 5
    users: int = 20
    eval_users: int = 12  # of the users, those who write held-out files: the eval set's rows
    sessions_per_user_day: int = 2
    max_completions: int | None = None
    eval_rows: int = 1_200  # at most; all the eval set's rows when it holds fewer
    replay_completions: int = 64
    replay_users: int = 4
    humaneval_problems: int = 10
    stdlib_lines: int = 160
    repository_examples: int = 2_000
    arms: tuple[str, ...] = arms.DEFAULT_ARMS
    train: TrainSettings = TrainSettings()
    # The preference arm's DPO, on Echo's checkpoint: a LoRA of the same shape at a lower rate (a
    # preference step moves the model further than a token-loss step); one pass over the pairs.
    preference_learning_rate: float = 2e-4
    generation: GenerationConfig = GenerationConfig()
    resamples: int = 1_000
    seed: int = 0

    def __post_init__(self):
        if "echo" not in self.arms:
            raise ValueError(f"arms {self.arms}: Echo must be one, its tokens are every other arm's budget")
        if unknown := set(self.arms) - set(arms.ARMS):
            raise ValueError(f"arms {sorted(unknown)}: expected some of {', '.join(arms.ARMS)}")


@dataclass
class ExperimentResult:
    folder: Path
    simulation: dict
    harvest: dict  # per day: completions, training and eval rows
    training: dict  # arm -> examples, tokens, steps, seconds, validation figures, checkpoint
    results: list[ArmResult]
    comparisons: dict  # arm -> {"vs_base": offline.paired, "vs_echo": ..., "vs_base_by_language": ...}
    verdict: gate.Verdict
    page: Path
    seconds: dict = field(default_factory=dict)

    def table(self) -> str:
        """The comparison as a Markdown table (for the README and the UI)."""
        return report.markdown_table(comparison_table(self.results, self.comparisons, self.training))

    def languages(self) -> str:
        """Each language's figures as a Markdown table (for the UI)."""
        return report.markdown_table(language_table(self.results, self.comparisons))


def run_experiment(spec: ExperimentSpec, folder: Path, models_dir: Path, log: Callable[[str], None] = print,
                   propose: Callable | None = None) -> ExperimentResult:
    """`propose`: what proposes completions to the simulated developers (default: the base model)."""
    folder.mkdir(parents=True, exist_ok=True)
    seconds, started = {}, time.perf_counter()

    def lap(step: str) -> None:
        nonlocal started
        seconds[step] = round(time.perf_counter() - started, 1)
        log(f"experiment: {step} done in {seconds[step]:.0f} s")
        started = time.perf_counter()

    landing = LocalLandingStore(folder / "landing")
    simulation = SimulationSpec(source=spec.source, start=spec.start, days=spec.days, users=spec.users,
                                eval_users=spec.eval_users, sessions_per_user_day=spec.sessions_per_user_day,
                                max_completions=spec.max_completions, seed=spec.seed)

    summary = simulate(simulation, landing, LocalLandingStore(folder / "landing-truth"),
                       propose or proposer(spec.base_model, models_dir, spec.generation, progress=True),
                       spec.base_model)
    lap("simulate")

    db = folder / "warehouse.duckdb"
    harvest = {}
    for day in (spec.start + timedelta(days=n) for n in range(spec.days)):
        ingest_partition(landing, day, db)
        with warehouse.connect(db) as con:
            refined = refine_partition(con, day)
            filtered = filter_partition(con, day)
        harvest[day.isoformat()] = {"completions": refined.completions, "training": filtered.kept_train,
                                    "eval": filtered.kept_eval}
    with warehouse.connect(db, read_only=True) as con:
        data = {arm: arms.examples(con, arm) for arm in spec.arms if arm != "repository"}
        rows = offline.held_out_rows(con, spec.eval_rows, spec.seed)
    if "repository" in spec.arms:
        data["repository"] = repository_examples(spec.source, spec.repository_examples, spec.seed)
    lap("harvest")

    registry = Registry(folder / "registry")
    training: dict[str, dict] = {}
    budget = 0
    for arm in ("echo", *[a for a in spec.arms if a != "echo"]):  # Echo first: its tokens are the budget
        if not data[arm] or (arm != "echo" and not budget):
            why = "no training example" if not data[arm] else "no budget: Echo was not trained"
            training[arm] = {"examples": len(data[arm]), "skipped": why}
            log(f"experiment: {arm} not trained, not measured: {why}")
            continue
        base = spec.base_model
        if arm == "echo":
            settings = spec.train
        elif arm == "preference":  # after SFT: on Echo's checkpoint, its own pairs once, beyond the budget
            base = str(registry.local(training["echo"]["checkpoint"]) / "merged")
            settings = replace(spec.train, objective="dpo", learning_rate=spec.preference_learning_rate, epochs=1,
                               max_tokens=0)
        else:
            settings = replace(spec.train, max_tokens=budget, epochs=_EPOCHS_TO_BUDGET, max_steps=0)
        published = train_and_publish(
            registry, data[arm], kind="echo" if arm == "echo" else arm, prefix=arm,
            data={"arm": arm, "examples": len(data[arm]),
                  "hash": data_hash([(e["completion_id"], e["target"]) for e in data[arm]])},
            base=base, champion=None, settings=settings, run_config=asdict(settings),
            work_root=folder / "training", models_dir=models_dir,
            on_step=lambda p, arm=arm: log(f"{arm}: step {p.step}/{p.total} loss {p.loss:.3f}")
            if p.step % 25 == 0 else None)
        result = published.result
        budget = budget or result.tokens
        training[arm] = {"checkpoint": published.name, "examples": len(data[arm]), "steps": result.steps,
                         "tokens": result.tokens, "seconds": round(result.seconds, 1),
                         "tokens_per_s": round(result.tokens / result.seconds) if result.seconds else None,
                         "base_validation_loss": result.base_validation_loss,
                         "best_validation_loss": result.best_validation_loss, "best_step": result.best_step,
                         "stopped_early": result.stopped_early, "precision": result.precision}
        lap(f"train {arm}")

    measured = [Arm(LABELS["base"], spec.base_model, ("base",))] + [
        Arm(LABELS[arm], str(registry.local(training[arm]["checkpoint"]) / "merged"), (arm,))
        for arm in spec.arms if "checkpoint" in training[arm]]
    suite = SuiteSettings(generation=spec.generation,
                          replay=promotion.replay_spec(spec.source, spec.replay_users, spec.replay_completions,
                                                       spec.seed + 1),
                          humaneval_problems=spec.humaneval_problems, stdlib_lines=spec.stdlib_lines,
                          resamples=spec.resamples)
    results = run_suite(measured, rows, suite, models_dir, log=log)
    lap("evaluate")

    by_arm = {r.arm.roles[0]: r for r in results}
    comparisons = {arm: {"vs_base": offline.paired(r.scored, by_arm["base"].scored, spec.resamples),
                         "vs_echo": offline.paired(r.scored, by_arm["echo"].scored, spec.resamples)
                         if "echo" in by_arm and arm != "echo" else None,
                         "vs_base_by_language": _by_language(r.scored, by_arm["base"].scored, spec.resamples)}
                   for arm, r in by_arm.items() if arm != "base"}
    if "echo" not in by_arm:
        verdict = gate.Verdict(False, ["no Echo checkpoint: the harvest kept no training example"])
    else:
        verdict = gate.decide(promotion.scores(by_arm["echo"]), promotion.scores(by_arm["base"]),
                              gate.GateSettings(resamples=spec.resamples))
        promotion.carry_out(registry, training["echo"]["checkpoint"], spec.base_model, verdict, len(rows))
    outcome = ExperimentResult(folder, summary.as_dict(), harvest, training, results, comparisons, verdict,
                               folder / "report" / "report.html", seconds)
    _write_report(outcome, spec, len(rows))
    return outcome


def _by_language(scored: list, base: list, resamples: int) -> dict:
    """Acceptance minus the base's on each language's rows, paired."""
    return {language: offline.paired([s for s in scored if s.language == language],
                                     [s for s in base if s.language == language], resamples)["acceptance"]
            for language in sorted({s.language for s in scored})}


# Enough passes for any arm to reach Echo's token budget: training stops at the budget (or earlier,
# when its held-out loss stops improving).
_EPOCHS_TO_BUDGET = 50


def comparison_table(results: list[ArmResult], comparisons: dict, training: dict) -> report.Table:
    """A row per model: each measure with its interval, and the arm's paired difference with the
    base and with Echo (points; the 95% interval in brackets)."""
    header = ("model", "acceptance", "Δ vs base", "Δ vs Echo", "ES", "Δ ES vs base", "exact match",
              "Δ exact vs base", "generation rate", "replay acceptance", "stdlib lines ES", "trained tokens")
    rows = []
    for r in results:
        arm = r.arm.roles[0]
        s, c = r.summary, comparisons.get(arm) or {}
        base, echo = c.get("vs_base") or {}, c.get("vs_echo") or {}
        rows.append((r.arm.name, report.interval(s["acceptance"]), _points(base.get("acceptance")),
                     _points(echo.get("acceptance")), report.interval(s["edit_similarity"]),
                     _points(base.get("edit_similarity")), report.interval(s["exact_match"]),
                     _points(base.get("exact_match")), report.interval(s["generation_rate"]),
                     f"{r.replay['acceptance_rate']:.1%}" if r.replay else "–",
                     report.interval(r.stdlib_summary.get("edit_similarity")),
                     f"{training[arm]['tokens']:,}" if "tokens" in training.get(arm, {}) else "–"))
    return header, rows


def _points(value) -> str:
    if not value:
        return "–"
    v, low, high = value
    return f"{v * 100:+.1f} [{low * 100:+.1f}, {high * 100:+.1f}]"


def language_table(results: list[ArmResult], comparisons: dict) -> report.Table:
    """A row per language of the held-out rows: each model's acceptance there and each arm's paired
    difference from the base on them."""
    arms = [r.arm.roles[0] for r in results if r.arm.roles[0] in comparisons]
    header = ("language", "rows", *(r.arm.name for r in results), *(f"{LABELS[arm]} − base" for arm in arms))
    rows = []
    for language in sorted({g for r in results for g in r.by_language}):
        summaries = [r.by_language.get(language) or {} for r in results]
        rows.append((language, str(summaries[0].get("n", 0)),
                     *(report.interval(s.get("acceptance")) for s in summaries),
                     *(_points(comparisons[arm]["vs_base_by_language"].get(language)) for arm in arms)))
    return header, rows


def _write_report(outcome: ExperimentResult, spec: ExperimentSpec, eval_rows: int) -> None:
    header, rows = comparison_table(outcome.results, outcome.comparisons, outcome.training)
    tables = {f"{eval_rows} held-out rows, paired (95% bootstrap intervals; Δ in points)": (header, rows),
              "By language: acceptance (95% bootstrap intervals) and Δ vs base (points, paired)":
                  language_table(outcome.results, outcome.comparisons),
              "Training (each arm from the base; every other arm stops at Echo's tokens)": (
                  ("arm", "examples", "steps", "tokens", "tokens/s", "held-out loss: base → best (step)"),
                  [(LABELS[a], str(t["examples"]), str(t["steps"]), f"{t['tokens']:,}", str(t["tokens_per_s"]),
                    _losses(t)) if "checkpoint" in t else (LABELS[a], "0", "–", "–", "–", t["skipped"])
                   for a, t in outcome.training.items()]),
              "Promotion gate (Echo against the base)": (("promote", "reasons"), [
                  ("yes" if outcome.verdict.promote else "no", "; ".join(outcome.verdict.reasons))])}
    figures = {"spec": {k: v for k, v in asdict(spec).items() if k not in ("train", "generation")},
               "train": asdict(spec.train), "generation": asdict(spec.generation), "simulation": outcome.simulation,
               "harvest": outcome.harvest, "training": outcome.training, "comparisons": outcome.comparisons,
               "models": [report.model_figures(r) for r in outcome.results], "seconds": outcome.seconds,
               "gate": {"promote": outcome.verdict.promote, "reasons": outcome.verdict.reasons,
                        "figures": outcome.verdict.figures}}
    built = report.Report(f"Echo experiment: {spec.days} days, {outcome.simulation['completions']} completions",
                          tables, report.chart(outcome.results), json.loads(json.dumps(figures, default=str)))
    built.write(outcome.page.parent)


def _losses(t: dict) -> str:
    if t["base_validation_loss"] is None:
        return "–"
    return f"{t['base_validation_loss']:.3f} → {t['best_validation_loss']:.3f} ({t['best_step']})"
