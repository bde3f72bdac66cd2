"""Every model under comparison through the same measurements: offline scores on the held-out eval
set, the replay A/B on held-out files, and the forgetting guards (standard-library lines, HumanEval).

A model is loaded once and measured on all of them; a model that plays two roles (the base that is
still the champion) is measured once.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path

from echo_dagster.evaluation import forgetting, humaneval, offline
from echo_dagster.model.generation import GenerationConfig, proposer
from echo_dagster.simulate.run import SimulationSpec, replay

ROLES = ("base", "champion", "challenger", "repository")


@dataclass(frozen=True)
class Arm:
    name: str  # how the report names it: a registry name, or the base model's spec
    spec: str  # a model spec (model.loading)
    roles: tuple[str, ...]


@dataclass(frozen=True)
class SuiteSettings:
    generation: GenerationConfig = GenerationConfig()
    replay: SimulationSpec | None = None  # None: no replay A/B
    humaneval_lines: int = 300  # HumanEval line tasks (evaluation.humaneval); 0: none
    stdlib_lines: int = 200  # standard-library completions of the forgetting guard (evaluation.forgetting); 0: none
    resamples: int = 2_000


@dataclass
class ArmResult:
    arm: Arm
    scored: list[offline.Scored]
    summary: dict
    by_language: dict
    by_source_kind: dict
    replay: dict | None = None  # acceptance_rate, kept_chars, generation_rate, completions, sessions
    humaneval: list[tuple[str, int]] = field(default_factory=list)  # (task id, passed) per line task
    stdlib: list[offline.Scored] = field(default_factory=list)  # the forgetting guard's completions, scored
    stdlib_summary: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)

    @property
    def humaneval_pass_rate(self) -> float | None:
        return sum(p for _, p in self.humaneval) / len(self.humaneval) if self.humaneval else None


def arms(base: str, champion: tuple[str, str] | None, challenger: tuple[str, str] | None,
         repository: tuple[str, str] | None) -> list[Arm]:
    """The models to measure, by role; (name, spec) pairs for registry checkpoints. The champion is
    the base when there is none."""
    named = [("base", (base, base)), ("champion", champion or (base, base)), ("challenger", challenger),
             ("repository", repository)]
    out: dict[str, Arm] = {}
    for role, pair in named:
        if pair is None:
            continue
        name, spec = pair
        held = out.get(spec)
        out[spec] = Arm(held.name if held else name, spec, (held.roles if held else ()) + (role,))
    return list(out.values())


def run_suite(models: list[Arm], rows: list[dict], settings: SuiteSettings, models_dir: str | Path,
              log=print) -> list[ArmResult]:
    tasks = humaneval.line_tasks(settings.humaneval_lines) if settings.humaneval_lines else []
    stdlib = forgetting.stdlib_rows(settings.stdlib_lines) if settings.stdlib_lines else []
    results = []
    for arm in models:
        seconds = {}
        started = time.perf_counter()
        propose = proposer(arm.spec, models_dir, settings.generation)
        propose([])  # loads the model: its time is the load's, not the eval set's
        seconds["load"] = time.perf_counter() - started
        started = time.perf_counter()
        scored = offline.evaluate(propose, rows)
        seconds["eval_set"] = time.perf_counter() - started
        result = ArmResult(arm, scored, offline.summarize(scored, settings.resamples),
                           offline.by_group(scored, "language", resamples=settings.resamples),
                           offline.by_group(scored, "source_kind", resamples=settings.resamples), seconds=seconds)
        if settings.replay is not None:
            started = time.perf_counter()
            played = replay(settings.replay, propose, arm.name)
            result.replay = {"acceptance_rate": played.acceptance_rate, "kept_chars": played.kept_chars,
                             "generation_rate": played.generation_rate, "completions": played.completions,
                             "sessions": played.sessions}
            seconds["replay"] = time.perf_counter() - started
        if tasks:
            started = time.perf_counter()
            result.humaneval = list(zip((t.task_id for t in tasks), humaneval.results(propose, tasks)))
            seconds["humaneval"] = time.perf_counter() - started
        if stdlib:
            started = time.perf_counter()
            result.stdlib = offline.evaluate(propose, stdlib)
            result.stdlib_summary = offline.summarize(result.stdlib, settings.resamples)
            seconds["stdlib"] = time.perf_counter() - started
        log(f"{arm.name} ({', '.join(arm.roles)}): kept characters {result.summary.get('kept_chars', (0,))[0]:.2f}, "
            f"acceptance {result.summary.get('acceptance', (0,))[0]:.3f} on {len(rows)} held-out rows"
            + (f", replay {result.replay['acceptance_rate']:.3f}" if result.replay else "")
            + (f", HumanEval lines {result.humaneval_pass_rate:.3f}" if tasks else "")
            + (f", stdlib kept {result.stdlib_summary['kept_chars'][0]:.2f}" if stdlib else "")
            + f" ({sum(seconds.values()):.0f} s)")
        results.append(result)
        del propose  # and the model it holds, before the next one loads
        gc.collect()
    return results


def by_role(results: list[ArmResult], role: str) -> ArmResult | None:
    return next((r for r in results if role in r.arm.roles), None)
