"""The experience simulator: simulated developers write real code with the assistant, over days.

Writes schema-v1 landing files (`<landing>/<day>/sim-<seed>-<user>.jsonl.gz`) and, beside the
landing zone (`<landing>-truth/`), the ground truth: per completion the true continuation, the
decision and why, per session the planted noise, and the train/eval split of files and users.
The same seed gives byte-identical files.
"""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import NamedTuple

from echo_dagster.completion import CompletionRequest
from echo_dagster.corpus import SourceFile, SourceScan, scan_source
from echo_dagster.landing import LandingStore, day_folder
from echo_dagster.simulate.sessions import NoiseConfig, SessionOutput, SessionPlan, plan_session, session_events
from echo_dagster.simulate.users import make_personas, personas_for
from echo_dagster.splits import file_split, repo_of, user_split

Proposer = Callable[[list[CompletionRequest]], list[str]]


@dataclass(frozen=True)
class SimulationSpec:
    source: str
    start: date
    days: int = 3
    users: int = 4
    eval_users: int = 0  # of `users`, how many work on held-out files (0: as the split of their ids falls)
    sessions_per_user_day: int = 3
    triggers_per_session: int = 12
    max_completions: int | None = None
    seed: int = 0
    noise: NoiseConfig = NoiseConfig()


@dataclass
class SimulationSummary:
    files: int = 0
    skipped: dict = field(default_factory=dict)
    sessions: int = 0
    completions: int = 0
    accepted: int = 0
    surviving_chars: int = 0
    target_chars: int = 0
    kept: int = 0
    events: int = 0
    noise: Counter = field(default_factory=Counter)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.completions if self.completions else 0.0

    @property
    def kept_chars(self) -> float:
        """Per completion: characters of accepted proposals that match the code written there up to
        their first difference (`metrics.kept_chars`)."""
        return self.kept / self.completions if self.completions else 0.0

    @property
    def generation_rate(self) -> float:
        return self.surviving_chars / self.target_chars if self.target_chars else 0.0

    def as_dict(self) -> dict:
        return {"files": self.files, "skipped": self.skipped, "sessions": self.sessions,
                "completions": self.completions, "accepted": self.accepted,
                "acceptance_rate": round(self.acceptance_rate, 4), "kept_chars": round(self.kept_chars, 3),
                "generation_rate": round(self.generation_rate, 4),
                "events": self.events, "noise": dict(sorted(self.noise.items()))}


def simulate(spec: SimulationSpec, landing: LandingStore, truth: LandingStore, propose: Proposer,
             model_name: str) -> SimulationSummary:
    scan, split_of, personas, rng, plans = _sessions(spec)
    summary = SimulationSummary(files=len(scan.files), skipped=dict(scan.skipped), sessions=len(plans))
    landed: dict[tuple[date, str], list[bytes]] = defaultdict(list)
    truths: dict[date, list[bytes]] = defaultdict(list)
    for plan, out in _play(plans, propose, model_name, rng, summary):
        day = plan.start.date()
        lines = _deliver(rng, out.events, day, spec.noise, summary.noise)
        for arrival, line in lines:
            landed[(arrival, plan.persona.user_id)].append(line)
        truths[day] += [_dump(row) for row in out.truth]
    for (day, user), lines in sorted(landed.items()):
        landing.write(f"{day_folder(day)}/sim-{spec.seed}-{user}.jsonl.gz", gzip.compress(b"".join(lines), mtime=0))
        summary.events += len(lines)
    for day, rows in sorted(truths.items()):
        truth.write(f"{day_folder(day)}/sim-{spec.seed}.jsonl", b"".join(rows))
    split = {"seed": spec.seed, "files": split_of, "users": {p.user_id: user_split(p.user_id) for p in personas},
             "source": str(scan.root)}
    truth.write(f"split-{spec.seed}.json", json.dumps(split, indent=1, sort_keys=True).encode())
    truth.write(f"summary-{spec.seed}.json", json.dumps(summary.as_dict(), indent=1).encode())
    return summary


def replay(spec: SimulationSpec, propose: Proposer, model_name: str) -> SimulationSummary:
    """The replay A/B arm of evaluation: every simulated developer works on held-out (eval-split)
    files with this model, reacting to its own proposals; nothing is written. The same spec gives
    every model the same sessions, so their rates compare."""
    scan = scan_source(spec.source)
    files = _files_by_split(scan, {f.path: file_split(repo_of(f.path), f.path) for f in scan.files})
    rng = random.Random(spec.seed)
    plans = _plan(spec, rng, make_personas(spec.users, spec.seed), lambda persona: "eval", files)
    summary = SimulationSummary(files=len(files["eval"]), skipped=dict(scan.skipped), sessions=len(plans))
    for _ in _play(plans, propose, model_name, rng, summary):
        pass
    return summary


def planned_requests(spec: SimulationSpec) -> list[dict]:
    """The requests a simulation asks its proposer for, in order, as held-out rows are shaped
    (`evaluation.offline.score`): prefix, suffix, language, file and session, and as target what its
    developer means to write from there — for measuring a proposer without running the simulation."""
    return [{"completion_id": f"{plan.session_id}:{n}", "language": request.language, "source_kind": "simulated",
             "prefix": request.prefix, "suffix": request.suffix, "target": plan.text[trigger.pos : plan.region[1]],
             "repo": repo_of(plan.file.path), "path": plan.file.path, "session_id": plan.session_id}
            for plan in _sessions(spec).plans
            for n, (request, trigger) in enumerate(zip(plan.requests(), plan.triggers))]


class _Planned(NamedTuple):
    scan: SourceScan
    split_of: dict[str, str]  # each file's split
    personas: list
    rng: random.Random  # the seeded generator the simulation goes on with
    plans: list[SessionPlan]


def _sessions(spec: SimulationSpec) -> _Planned:
    """The sessions a spec plans, and what they were planned from: the same for a spec every time."""
    scan = scan_source(spec.source)
    split_of = {f.path: file_split(repo_of(f.path), f.path) for f in scan.files}
    personas = personas_for(spec.users, spec.seed, spec.eval_users, lambda p: user_split(p.user_id))
    rng = random.Random(spec.seed)
    plans = _plan(spec, rng, personas, lambda p: user_split(p.user_id), _files_by_split(scan, split_of))
    return _Planned(scan, split_of, personas, rng, plans)


def _files_by_split(scan: SourceScan, split_of: dict[str, str]) -> dict[str, list[SourceFile]]:
    files = {"train": [f for f in scan.files if split_of[f.path] == "train"],
             "eval": [f for f in scan.files if split_of[f.path] == "eval"]}
    if not files["eval"]:  # a tiny source: still hold one file out
        files["eval"], files["train"] = scan.files[-1:], scan.files[:-1] or scan.files[-1:]
    return files


def _plan(spec: SimulationSpec, rng: random.Random, personas: list, split_for: Callable,
          files: dict[str, list[SourceFile]]) -> list[SessionPlan]:
    plans = []
    for d in range(spec.days):
        day = spec.start + timedelta(days=d)
        for persona in personas:
            split = split_for(persona)
            for n in range(spec.sessions_per_user_day):
                file: SourceFile = rng.choice(files[split])
                # Work hours, so sessions end the same day; late delivery is the only way across days.
                start = datetime.combine(day, time(8), timezone.utc) + timedelta(seconds=rng.randrange(10 * 3600))
                session_id = f"sim{spec.seed}-{day.isoformat()}-{persona.user_id[-3:]}-{n:02d}"
                plans.append(plan_session(rng, session_id, persona, file, split, start, spec.noise,
                                          spec.triggers_per_session))
    if spec.max_completions is not None:
        plans = _cap(plans, spec.max_completions)
    return plans


def _play(plans: list[SessionPlan], propose: Proposer, model_name: str, rng: random.Random,
          summary: SimulationSummary) -> Iterator[tuple[SessionPlan, SessionOutput]]:
    """Each session with the model's proposals (asked for all at once, in batches), counted."""
    proposals = iter(propose([r for plan in plans for r in plan.requests()]))
    for plan in plans:
        out = session_events(plan, [next(proposals) for _ in plan.triggers], model_name, rng)
        summary.completions += out.completions
        summary.accepted += out.accepted
        summary.surviving_chars += out.surviving
        summary.kept += out.kept
        summary.target_chars += out.target_chars
        summary.noise.update(out.noise)
        yield plan, out


def _cap(plans: list, max_completions: int) -> list:
    """At most `max_completions` triggers, spread evenly over the sessions (so over the days)."""
    share = max(1, max_completions // max(1, len(plans)))
    kept, total = [], 0
    for plan in plans:
        if total >= max_completions:
            break
        plan.triggers = plan.triggers[: min(share, max_completions - total)]
        total += len(plan.triggers)
        kept.append(plan)
    return kept


def _deliver(rng: random.Random, events: list[dict], day: date, noise: NoiseConfig,
             counts: Counter) -> list[tuple[date, bytes]]:
    """Delivery as clients do it: some events twice, some a day late, some out of order."""
    out: list[tuple[date, bytes]] = []
    for event in events:
        line = _dump(event)
        arrival = day
        if rng.random() < noise.late:
            arrival = day + timedelta(days=1)
            counts["late"] += 1
        out.append((arrival, line))
        if rng.random() < noise.duplicate:
            out.append((arrival, line))
            counts["duplicate"] += 1
    for i in range(len(out) - 1):
        if rng.random() < noise.out_of_order:
            out[i], out[i + 1] = out[i + 1], out[i]
            counts["out_of_order"] += 1
    return out


def _dump(row: dict) -> bytes:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
