"""The challenger meets the gate: the models measured, the verdict, the report, and the record of
the decision in the registry (and the new champion when it wins)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from echo_dagster.evaluation import gate, report
from echo_dagster.evaluation.suite import ArmResult, SuiteSettings, arms, by_role, run_suite
from echo_dagster.filters.decontaminate import target_digest
from echo_dagster.provenance import provenance
from echo_dagster.simulate.run import SimulationSpec
from echo_dagster.training.publish import trained_on
from echo_dagster.training.registry import MalformedPointer, Registry

# The replay A/B writes nothing, so its sessions' day only has to be the same for every model.
REPLAY_DAY = date(2026, 1, 5)


def replay_spec(source: str, users: int, completions: int, seed: int) -> SimulationSpec | None:
    """The replay A/B's sessions on held-out files: one day, every model the same (None: no replay)."""
    if not completions:
        return None
    return SimulationSpec(source=source, start=REPLAY_DAY, days=1, users=users, max_completions=completions,
                          seed=seed)


@dataclass(frozen=True)
class Outcome:
    challenger: str
    champion_before: str
    repository: str | None
    results: list[ArmResult]
    verdict: gate.Verdict
    report: report.Report
    page: Path
    decision: str  # the decision's record in the registry


def evaluate_challenger(registry: Registry, rows: list[dict], base_model: str, settings: SuiteSettings,
                        gate_settings: gate.GateSettings, models_dir: Path, reports_dir: Path, run_config: dict,
                        log: Callable[[str], None] = print, tenant: str | None = None) -> Outcome | None:
    """The latest Echo checkpoint against the base, the champion and the repository baseline on
    `rows` (held-out eval rows); None when the registry holds no Echo checkpoint. `tenant`: the
    latest of that tenant's own checkpoints, against its own champion (None: the pooled model)."""
    latest = registry.latest("echo", tenant)
    if latest is None:
        return None
    challenger = latest["name"]
    try:
        champion = registry.champion(tenant)
    except MalformedPointer as err:  # measured as if there were none, so that a promotion can mend it
        log(f"{err}: the challenger is measured against the base")
        champion = None
    repository = registry.latest("repository")

    def checkpoint(name: str) -> tuple[str, str]:
        return name, str(registry.local(name) / "merged")

    measured = arms(base_model, checkpoint(champion) if champion else None, checkpoint(challenger),
                    checkpoint(repository["name"]) if repository else None)
    # Training left out every target of the eval set as it was then; rows added since may hold a
    # target an older champion (or the baseline) learned from, which would flatter it.
    seen = trained_on(registry, [challenger, champion, repository["name"] if repository else None])
    held_out = [r for r in rows if target_digest(r["target"]) not in seen]
    left_out = len(rows) - len(held_out)
    if not held_out:
        raise ValueError(f"all {len(rows)} held-out rows hold a target a measured checkpoint was trained on: "
                         "nothing left to evaluate on")
    if left_out:
        log(f"{left_out} held-out rows left out: a measured checkpoint was trained on their target")
    rows = held_out
    results = run_suite(measured, rows, settings, models_dir, log=log)
    new, old = by_role(results, "challenger"), by_role(results, "champion")
    verdict = judge(registry, challenger, new, old, gate_settings)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    measured_by = provenance(run_config)  # the commit and config every figure of the report comes from
    built = report.build(f"Echo evaluation {stamp}: {challenger}", results, verdict,
                         {"challenger": challenger, "champion_before": old.arm.name, "eval_rows": len(rows),
                          "eval_rows_seen_in_training": left_out, "provenance": measured_by})
    page = built.write(reports_dir / f"{stamp}-{challenger}")
    report.write_scores(page.parent / "scores.json", results, measured_by)
    decision = carry_out(registry, challenger, old.arm.name, verdict, len(rows), tenant)
    return Outcome(challenger, old.arm.name, repository["name"] if repository else None, results, verdict, built,
                   page, decision)


def carry_out(registry: Registry, challenger: str, champion: str, verdict: gate.Verdict, eval_rows: int,
              tenant: str | None = None) -> dict:
    """Promotes the challenger when the verdict says so and records the decision either way."""
    if verdict.promote:
        registry.set_champion(challenger, "; ".join(verdict.reasons), tenant)
    return registry.record_decision({"challenger": challenger, "champion": champion, "tenant": tenant,
                                     "promoted": verdict.promote,
                                     "reasons": verdict.reasons, "figures": verdict.figures, "eval_rows": eval_rows})


def judge(registry: Registry, challenger: str, new: ArmResult, old: ArmResult,
          settings: gate.GateSettings) -> gate.Verdict:
    """The gate's verdict, after the two refusals that need no measurement: a challenger that is
    already the champion, and one marked (trained on data whose subject opted out)."""
    if new is old:
        return gate.Verdict(False, [f"{challenger} is already the champion"])
    if registry.marks(challenger):
        return gate.Verdict(False, [f"{challenger} is marked: {registry.marks(challenger)[-1]['reason']}"])
    return gate.decide(scores(new), scores(old), settings)


def scores(result: ArmResult) -> gate.Scores:
    """What the gate reads of a model's results: per held-out row, kept characters and acceptance,
    clustered by file; per guard item, its score, clustered by HumanEval problem or stdlib module."""
    files = [s.file for s in result.scored]
    guards = {}
    if result.humaneval:
        guards["humaneval"] = gate.Measured([p for _, p in result.humaneval], [t for t, _ in result.humaneval])
    if result.stdlib:
        guards["stdlib"] = gate.Measured([s.kept for s in result.stdlib], [s.file for s in result.stdlib])
    return gate.Scores(gate.Measured([s.kept for s in result.scored], files),
                       gate.Measured([s.accepted for s in result.scored], files), guards)
