"""The experiment with power: the loop at a size that decides, and the arms that say why.

Simulated developers write a few days of code from the default corpus with the base model
proposing; the days are harvested (raw_sessions → refined_targets → filtered_dataset); each arm
(`experiment.arms`) is trained from the same base with the same token budget — Echo's — and at
most `max_passes` passes over its data; no arm's example equals or nearly equals an eval target
(`filters.decontaminate`). Every model is measured on the same held-out rows, the same replayed
sessions and the same forgetting guards, and every arm is compared with the base and with Echo,
paired, with 95% intervals resampling files (`evaluation.intervals`): kept characters per request
(what the gate decides on), acceptance, and the rest of `evaluation.offline.METRICS`.
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
from echo_dagster.filters.decontaminate import decontaminate, eval_targets
from echo_dagster.filters.partition import filter_partition
from echo_dagster.harvest.partition import refine_partition
from echo_dagster.ingest.raw_sessions import ingest_partition
from echo_dagster.landing import LocalLandingStore
from echo_dagster.model.generation import GenerationConfig, proposer
from echo_dagster.provenance import provenance
from echo_dagster.simulate.run import SimulationSpec, simulate
from echo_dagster.training import window
from echo_dagster.training.examples import data_hash
from echo_dagster.training.publish import train_and_publish
from echo_dagster.training.registry import Registry
from echo_dagster.training.repository import completion_examples, repository_examples, training_files
from echo_dagster.training.trainer import TrainResult, TrainSettings

# Five packages of Python: the default corpus alone has 37 files, too few held-out ones for an
# interval that resamples files to decide.
EXPERIMENT_CORPUS = f"{DEFAULT_CORPUS},dagster_aws,dagster_graphql,dagster_webserver,dagster_postgres"
LABELS = {"base": "base", "echo": "Echo", "naive_logs": "naive logs", "untrimmed": "untrimmed, unfiltered",
          "repository": "repository files", "repository_completions": "repository files cut like completions",
          "preference": "Echo + DPO"}


@dataclass(frozen=True)
class ExperimentSpec:
    base_model: str
    source: str = EXPERIMENT_CORPUS
    start: date = date(2026, 1, 5)  # the simulated days; the experiment's own folder, so any days do
    days: int = 3
    users: int = 20
    eval_users: int = 12  # of the users, those who write held-out files: the eval set's rows
    sessions_per_user_day: int = 2
    max_completions: int | None = None
    eval_rows: int = 1_200  # at most; all the eval set's rows when it holds fewer
    replay_completions: int = 64
    replay_users: int = 4
    humaneval_lines: int = 300
    stdlib_lines: int = 200
    repository_examples: int = 2_000  # of each repository arm
    max_passes: int = 3  # over an arm's data, whatever is left of the token budget
    arms: tuple[str, ...] = arms.DEFAULT_ARMS
    train: TrainSettings = TrainSettings()
    # The preference arm's DPO, on Echo's checkpoint: a LoRA of the same shape at a lower rate (a
    # preference step moves the model further than a token-loss step); one pass over the pairs.
    preference_learning_rate: float = 2e-4
    generation: GenerationConfig = GenerationConfig()
    resamples: int = 2_000
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
                   propose: Callable | None = None, resume: bool = False) -> ExperimentResult:
    """`propose`: what proposes completions to the simulated developers (default: the base model);
    `resume`: go on with an unfinished run of the same spec in `folder` — its simulation and every
    arm it trained are taken as they are (the harvest, idempotent, runs again; every model is
    measured again, with the code of this moment)."""
    folder.mkdir(parents=True, exist_ok=True)
    _same_spec(spec, folder / "experiment.json", resume)
    # At the start: the code that measures is the code of this moment, whatever changes while it runs.
    measured_by = provenance(asdict(spec))
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

    truth = LocalLandingStore(folder / "landing-truth")
    if resume and (simulated_file := truth.root / f"summary-{spec.seed}.json").is_file():  # simulate's last write
        simulated = json.loads(simulated_file.read_text()) | {"reused": True}
        log(f"experiment: the simulation in {folder} reused")
    else:
        simulated = simulate(simulation, landing, truth,
                             propose or proposer(spec.base_model, models_dir, spec.generation, progress=True),
                             spec.base_model).as_dict()
    lap("simulate")

    harvested = harvest(spec, folder)
    lap("harvest")
    training = train_arms(spec, folder, harvested, models_dir, log=log, reuse=resume,
                          lap=lambda arm: lap(f"train {arm}"))
    registry = Registry(folder / "registry")
    rows = harvested.rows

    measured = [Arm(LABELS["base"], spec.base_model, ("base",))] + [
        Arm(LABELS[arm], str(registry.local(training[arm]["checkpoint"]) / "merged"), (arm,))
        for arm in spec.arms if "checkpoint" in training[arm]]
    suite = SuiteSettings(generation=spec.generation,
                          replay=promotion.replay_spec(spec.source, spec.replay_users, spec.replay_completions,
                                                       spec.seed + 1),
                          humaneval_lines=spec.humaneval_lines, stdlib_lines=spec.stdlib_lines,
                          resamples=spec.resamples)
    results = run_suite(measured, rows, suite, models_dir, log=log)
    lap("evaluate")

    by_arm = {r.arm.roles[0]: r for r in results}
    comparisons = compare(by_arm, spec.resamples)
    if "echo" not in by_arm:
        verdict = gate.Verdict(False, ["no Echo checkpoint: the harvest kept no training example"])
    else:
        verdict = gate.decide(promotion.scores(by_arm["echo"]), promotion.scores(by_arm["base"]),
                              gate.GateSettings(resamples=spec.resamples))
        promotion.carry_out(registry, training["echo"]["checkpoint"], spec.base_model, verdict, len(rows))
    outcome = ExperimentResult(folder, simulated, harvested.days, training, results, comparisons, verdict,
                               folder / "report" / "report.html", seconds)
    _write_report(outcome, spec, len(rows), measured_by)
    return outcome


@dataclass
class Harvested:
    days: dict  # per day: completions, training and eval rows
    data: dict  # arm -> its training examples, none equal or near an eval target
    decontaminated: dict  # arm -> examples left out for being so
    rows: list  # the held-out rows every model is measured on


def harvest(spec: ExperimentSpec, folder: Path) -> Harvested:
    """The folder's landing zone through raw_sessions → refined_targets → filtered_dataset, day by day
    (idempotent: a second call gives the same), then every arm's data and the held-out rows."""
    db = folder / "warehouse.duckdb"
    landing = LocalLandingStore(folder / "landing")
    days = {}
    for day in (spec.start + timedelta(days=n) for n in range(spec.days)):
        ingest_partition(landing, day, db)
        with warehouse.connect(db) as con:
            refined = refine_partition(con, day)
            filtered = filter_partition(con, day)
        days[day.isoformat()] = {"completions": refined.completions, "training": filtered.kept_train,
                                 "eval": filtered.kept_eval}
    with warehouse.connect(db, read_only=True) as con:
        echo = window.load(con, window.Window())  # decontaminated as train_job's are
        data = {"echo": echo.examples} | {arm: arms.examples(con, arm) for arm in spec.arms
                                          if arm != "echo" and not arm.startswith("repository")}
        rows = offline.held_out_rows(con, spec.eval_rows, spec.seed)
        index = eval_targets(con)
    if "repository" in spec.arms:
        data["repository"] = repository_examples(spec.source, spec.repository_examples, spec.seed)
    if "repository_completions" in spec.arms:
        data["repository_completions"] = completion_examples(training_files(spec.source), spec.repository_examples,
                                                             spec.seed)
    decontaminated = {"echo": echo.decontaminated}
    for arm in [a for a in data if a != "echo"]:  # every arm as Echo's window: none trains on an eval target
        data[arm], decontaminated[arm] = decontaminate(data[arm], index)
    return Harvested(days, data, decontaminated, rows)


def train_arms(spec: ExperimentSpec, folder: Path, harvested: Harvested, models_dir: Path,
               log: Callable[[str], None] = print, reuse: bool = False, only: tuple[str, ...] | None = None,
               lap: Callable[[str], None] = lambda arm: None) -> dict[str, dict]:
    """Each arm trained from the base into the folder's registry, Echo first (its tokens are every
    other arm's budget); `reuse`: a checkpoint of the same data and settings is taken as it is; `only`:
    these arms besides Echo (the others neither trained nor measured)."""
    if only is not None and (unknown := set(only) - set(spec.arms)):
        raise ValueError(f"arms {sorted(unknown)}: this experiment's arms are {', '.join(spec.arms)}")
    registry = Registry(folder / "registry")
    data, decontaminated = harvested.data, harvested.decontaminated
    training: dict[str, dict] = {}
    budget = 0
    for arm in ("echo", *[a for a in spec.arms if a != "echo" and (only is None or a in only)]):
        if not data[arm] or (arm != "echo" and not budget):
            why = "no training example" if not data[arm] else "no budget: Echo was not trained"
            training[arm] = {"examples": len(data[arm]), "decontaminated": decontaminated[arm], "skipped": why}
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
            settings = replace(spec.train, max_tokens=budget, epochs=spec.max_passes, max_steps=0)
        published = train_and_publish(
            registry, data[arm], kind="echo" if arm == "echo" else arm, prefix=arm,
            data={"arm": arm, "examples": len(data[arm]),
                  "hash": data_hash([(e["completion_id"], e["target"]) for e in data[arm]])},
            base=base, champion=None, settings=settings, run_config=asdict(settings),
            work_root=folder / "training", models_dir=models_dir, reuse=reuse,
            on_step=lambda p, arm=arm: log(f"{arm}: step {p.step}/{p.total} loss {p.loss:.3f}")
            if p.step % 25 == 0 else None)
        result = published.result
        budget = budget or result.tokens
        training[arm] = {"checkpoint": published.name, "examples": len(data[arm]),
                         "decontaminated": decontaminated[arm], "passes": passes(result, settings.batch_size),
                         "steps": result.steps,
                         "tokens": result.tokens, "seconds": (took := published.meta["metrics"]["seconds"]),
                         "tokens_per_s": round(result.tokens / took) if took else None,
                         "base_validation_loss": result.base_validation_loss,
                         "best_validation_loss": result.best_validation_loss, "best_step": result.best_step,
                         "stopped_early": result.stopped_early, "precision": result.precision,
                         "code_version": published.meta["code_version"]}
        lap(arm)
    return training


def compare(by_arm: dict[str, ArmResult], resamples: int) -> dict:
    """Every arm against the base and against Echo, paired on their rows (and per language)."""
    return {arm: {"vs_base": offline.paired(r.scored, by_arm["base"].scored, resamples),
                  "vs_echo": offline.paired(r.scored, by_arm["echo"].scored, resamples)
                  if "echo" in by_arm and arm != "echo" else None,
                  "vs_base_by_language": _by_language(r.scored, by_arm["base"].scored, resamples)}
            for arm, r in by_arm.items() if arm != "base"}


def recorded_spec(folder: Path) -> ExperimentSpec:
    """The spec a folder's run is of, as its experiment.json records it."""
    recorded = json.loads((folder / "experiment.json").read_text())

    def tuples(d: dict) -> dict:
        return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return ExperimentSpec(**tuples(recorded) | {"start": date.fromisoformat(recorded["start"]),
                                                "train": TrainSettings(**tuples(recorded["train"])),
                                                "generation": GenerationConfig(**recorded["generation"])})


def _same_spec(spec: ExperimentSpec, path: Path, resume: bool) -> None:
    """Records the spec a folder's run is of; a resumed run must be of the same one."""
    recorded = json.loads(json.dumps(asdict(spec), default=str))
    if resume and path.is_file():
        if differs := sorted(k for k, v in json.loads(path.read_text()).items() if recorded.get(k) != v):
            raise ValueError(f"{path.parent} is a run of another spec ({', '.join(differs)} differ): not resumed")
    elif resume:
        raise ValueError(f"{path.parent} holds no experiment.json: no experiment's run to resume")
    path.write_text(json.dumps(recorded, indent=1))


def _by_language(scored: list, base: list, resamples: int) -> dict:
    """Each language's paired differences from the base on its rows (kept characters, acceptance)."""
    out = {}
    for language in sorted({s.language for s in scored}):
        diff = offline.paired([s for s in scored if s.language == language],
                              [s for s in base if s.language == language], resamples)
        out[language] = {"kept_chars": diff["kept_chars"], "acceptance": diff["acceptance"], "files": diff["files"]}
    return out


def passes(result: TrainResult, batch_size: int) -> float:
    """Passes over the arm's training examples (the validation slice left out) its steps made."""
    return round(result.steps * batch_size / max(1, result.examples), 2)


def comparison_table(results: list[ArmResult], comparisons: dict, training: dict) -> report.Table:
    """A row per model: kept characters per request and acceptance with their intervals and the
    arm's paired differences from the base and from Echo, the measures against the whole target,
    the guards, and what the arm trained on (tokens, passes over its data)."""
    header = ("model", "kept chars / request", "Δ vs base", "Δ vs Echo", "acceptance", "Δ vs base (points)",
              "Δ vs Echo (points)", "exact match", "ES", "line precision", "line recall", "proposal chars",
              "HumanEval lines", "stdlib kept chars", "trained tokens", "passes")
    rows = []
    for r in results:
        arm = r.arm.roles[0]
        s, c, t = r.summary, comparisons.get(arm) or {}, training.get(arm, {})
        base, echo = c.get("vs_base") or {}, c.get("vs_echo") or {}
        rows.append((r.arm.name, report.chars(s["kept_chars"]), report.chars(base.get("kept_chars"), signed=True),
                     report.chars(echo.get("kept_chars"), signed=True), report.interval(s["acceptance"]),
                     report.points(base.get("acceptance")), report.points(echo.get("acceptance")),
                     report.interval(s["exact_match"]),
                     report.interval(s["edit_similarity"]), report.interval(s["line_precision"]),
                     report.interval(s["line_recall"]), f"{s['proposal_chars'][0]:.1f}",
                     f"{r.humaneval_pass_rate:.1%}" if r.humaneval else "–",
                     report.chars(r.stdlib_summary.get("kept_chars")),
                     f"{t['tokens']:,}" if "tokens" in t else "–", str(t["passes"]) if "passes" in t else "–"))
    return header, rows


def language_table(results: list[ArmResult], comparisons: dict) -> report.Table:
    """A row per language of the held-out rows: its rows and files, each model's kept characters
    per request there and each arm's paired difference from the base on them."""
    arms = [r.arm.roles[0] for r in results if r.arm.roles[0] in comparisons]
    header = ("language", "rows", "files", *(r.arm.name for r in results), *(f"{LABELS[arm]} − base" for arm in arms))
    rows = []
    for language in sorted({g for r in results for g in r.by_language}):
        summaries = [r.by_language.get(language) or {} for r in results]
        rows.append((language, str(summaries[0].get("n", 0)), str(summaries[0].get("files", 0)),
                     *(report.chars(s.get("kept_chars")) for s in summaries),
                     *(report.chars((comparisons[arm]["vs_base_by_language"].get(language) or {}).get("kept_chars"),
                                    signed=True) for arm in arms)))
    return header, rows


def _write_report(outcome: ExperimentResult, spec: ExperimentSpec, eval_rows: int, measured_by: dict) -> None:
    header, rows = comparison_table(outcome.results, outcome.comparisons, outcome.training)
    files = outcome.results[0].summary.get("files", 0) if outcome.results else 0
    sessions = outcome.results[0].summary.get("sessions", 0) if outcome.results else 0
    tables = {f"{eval_rows} held-out rows from {files} files and {sessions} sessions, paired (95% intervals "
              "resampling files; Δ acceptance in points)": (header, rows),
              "By language: kept characters per request and Δ vs base (paired, 95% intervals resampling files)":
                  language_table(outcome.results, outcome.comparisons),
              "Training (each arm from the base; every other arm stops at Echo's tokens or its passes)": (
                  ("arm", "examples", "decontaminated", "steps", "passes", "tokens", "tokens/s",
                   "held-out loss: base → best (step)"),
                  [(LABELS[a], str(t["examples"]), str(t["decontaminated"]), str(t["steps"]), str(t["passes"]),
                    f"{t['tokens']:,}", str(t["tokens_per_s"]), _losses(t)) if "checkpoint" in t
                   else (LABELS[a], str(t["examples"]), str(t["decontaminated"]), "–", "–", "–", "–", t["skipped"])
                   for a, t in outcome.training.items()]),
              "Promotion gate (Echo against the base)": (("promote", "reasons"), [
                  ("yes" if outcome.verdict.promote else "no", "; ".join(outcome.verdict.reasons))])}
    figures = {"provenance": measured_by, "train": asdict(spec.train), "generation": asdict(spec.generation),
               "simulation": outcome.simulation, "harvest": outcome.harvest, "training": outcome.training,
               "comparisons": outcome.comparisons, "models": [report.model_figures(r) for r in outcome.results],
               "seconds": outcome.seconds, "gate": {"promote": outcome.verdict.promote,
                                                    "reasons": outcome.verdict.reasons,
                                                    "figures": outcome.verdict.figures}}
    built = report.Report(f"Echo experiment: {spec.days} days, {outcome.simulation['completions']} completions",
                          tables, report.chart(outcome.results), json.loads(json.dumps(figures, default=str)))
    built.write(outcome.page.parent)
    report.write_scores(outcome.page.parent / "scores.json", outcome.results, figures["provenance"])


def _losses(t: dict) -> str:
    if t["base_validation_loss"] is None:
        return "–"
    return f"{t['base_validation_loss']:.3f} → {t['best_validation_loss']:.3f} ({t['best_step']})"
