"""One simulated file session: a developer writes a region of a real file in order, with the
assistant proposing completions at realistic points.

`plan_session` decides everything that does not depend on the model (the region, the triggers and
what the document holds before each, the noise); `session_events` turns a plan and the model's
proposals into schema-v1 events and ground truth. Because the user always ends up writing the true
code, every prompt is known before any proposal is asked for, so proposals are batched across
sessions.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from echo_dagster import languages
from echo_dagster.completion import CompletionRequest, trigger_points
from echo_dagster.corpus import SourceFile
from echo_dagster.events import format_ts
from echo_dagster.metrics import edit_similarity, first_lines, matching_chars, simulated_accept, surviving_chars
from echo_dagster.simulate.users import Persona
from echo_dagster.splits import repo_of
from echo_dagster.syntax import error_spans

SNAPSHOT_DELAYS_S = (30, 120, 300, 600)  # after each decision, as the clients take them


@dataclass(frozen=True)
class NoiseConfig:
    typo: float = 0.15  # per completion: a snapshot shows a typo that a later one fixes
    unrelated_edit: float = 0.3  # per session: a line above the region is added after the last proposal
    paste: float = 0.15  # per session: part of the region is pasted, not typed
    abandon: float = 0.05  # per session: no save, no close, the region left half written
    pii: float = 0.15  # per session: a comment or string with PII or a secret is planted
    duplicate: float = 0.02  # per event: delivered twice
    late: float = 0.03  # per event: delivered into the next day's folder
    out_of_order: float = 0.05  # per event: swapped with its neighbour in the file


@dataclass(frozen=True)
class Trigger:
    pos: int  # offset in the true text where the cursor stands
    mid_line: bool


@dataclass
class SessionPlan:
    session_id: str
    persona: Persona
    file: SourceFile
    split: str
    text: str  # the true file, planted PII included
    region: tuple[int, int]  # [start, end) offsets of what the user writes
    start: datetime
    triggers: list[Trigger]
    end_pos: int  # where typing stops (the region's end unless abandoned)
    abandoned: bool
    paste: tuple[int, int] | None  # pasted span, no triggers inside
    unrelated_edit: tuple[int, str] | None  # (offset above the region, text inserted there)
    typos: set[int] = field(default_factory=set)  # trigger indexes whose next snapshot shows a typo
    planted: list[dict] = field(default_factory=list)

    def requests(self) -> list[CompletionRequest]:
        return [CompletionRequest(self.text[: t.pos], self.text[self.region[1]:], self.file.language)
                for t in self.triggers]


# What developers leave in code: prose in a comment (written after the language's line comment),
# or a secret assigned to a name (by the language's assignment statement).
_PII = (
    ("email", "questions: {first}.{last}@example.org"),
    ("phone", "on call: {first} {last}, +1 415 555 {n4}"),
    ("person", "reviewed by {first} {last}"),
    ("aws_key", ("AWS_ACCESS_KEY_ID", "AKIA{key16}")),
    ("github_token", ("GITHUB_TOKEN", "ghp_{key36}")),
)
_FIRST = ("Jane", "Ravi", "Olga", "Tomasz", "Amara", "Kenji", "Lucia", "Omar")
_LAST = ("Doe", "Patel", "Ivanova", "Nowak", "Okafor", "Tanaka", "Rossi", "Haddad")


def plan_session(rng: random.Random, session_id: str, persona: Persona, file: SourceFile, split: str,
                 start: datetime, noise: NoiseConfig, max_triggers: int) -> SessionPlan:
    text, planted = file.text, []
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    first = rng.randrange(0, max(1, len(lines) - 15))
    last = min(len(lines), first + rng.randint(15, 60))
    region = (offsets[first], offsets[last])
    if rng.random() < noise.pii:
        text, planted, region = _plant(rng, text, region, file.language)
    paste = None
    if rng.random() < noise.paste:
        a = rng.randrange(region[0], region[1])
        a = text.rfind("\n", 0, a) + 1
        b = text.find("\n", a + (region[1] - region[0]) // 3)
        paste = (a, min(region[1], b + 1 if b >= 0 else region[1]))
    triggers = _triggers(rng, text, region, paste, max_triggers)
    abandoned = rng.random() < noise.abandon
    end_pos = region[1]
    if abandoned and triggers:
        end_pos = triggers[len(triggers) // 2].pos
        triggers = triggers[: len(triggers) // 2]
    edit = None
    if rng.random() < noise.unrelated_edit and region[0] > 0:
        at = text.rfind("\n", 0, rng.randrange(0, region[0])) + 1
        edit = (at, f"{languages.language(file.language).line_comment} TODO: revisit\n")
    typos = {i for i in range(len(triggers)) if rng.random() < noise.typo}
    return SessionPlan(session_id, persona, file, split, text, region, start, triggers, end_pos, abandoned,
                       paste, edit, typos, planted)


def _plant(rng, text: str, region: tuple[int, int], language: str):
    kind, template = rng.choice(_PII)
    fields = dict(first=rng.choice(_FIRST), last=rng.choice(_LAST), n4=rng.randrange(1000, 9999),
                  key16="".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)),
                  key36="".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(36)))
    at = text.rfind("\n", 0, rng.randrange(region[0], region[1])) + 1
    at = max(at, region[0])
    indent = re.match(r"[ \t]*", text[at:]).group(0)
    rules = languages.language(language)
    comment = f"{rules.line_comment} "
    if isinstance(template, str):
        value = comment + template.format(**fields)
    else:
        name, secret = template
        value = rules.assignment.format(name=name, value=secret.format(**fields))
        if not _parses(text[:at] + indent + value + "\n" + text[at:], language):
            value = comment + value  # inside brackets or a continuation: a comment is safe anywhere
    line = indent + value + "\n"
    planted = [{"kind": kind, "value": value, "offset": at}]
    return text[:at] + line + text[at:], planted, (region[0], region[1] + len(line))


def _parses(code: str, language: str) -> bool:
    return not error_spans(code.encode(), language) and languages.language(language).compiles(code)


def _triggers(rng, text: str, region: tuple[int, int], paste, max_triggers: int) -> list[Trigger]:
    candidates = [Trigger(pos, mid) for pos, mid in trigger_points(text, *region)]
    if paste:
        candidates = [t for t in candidates if not paste[0] <= t.pos < paste[1]]
    picked = rng.sample(candidates, min(max_triggers, len(candidates)))
    return sorted(picked, key=lambda t: t.pos)


@dataclass
class SessionOutput:
    events: list[dict]
    truth: list[dict]
    completions: int = 0
    accepted: int = 0
    surviving: int = 0
    target_chars: int = 0
    kept: int = 0  # characters of accepted proposals that match the true text up to a first difference
    noise: dict = field(default_factory=dict)


def session_events(plan: SessionPlan, proposals: list[str], model_name: str, rng: random.Random) -> SessionOutput:
    p = plan.persona
    a, b = plan.region
    common = {"schema_version": 1, "session_id": plan.session_id, "user_id": p.user_id, "tenant_id": p.tenant_id,
              "repo": repo_of(plan.file.path), "path": plan.file.path, "language": plan.file.language,
              "client": p.client}
    events: list[tuple[datetime, dict]] = []
    truth: list[dict] = []
    out = SessionOutput(events=[], truth=truth, noise={
        "typo": 0, "unrelated_edit": int(plan.unrelated_edit is not None), "paste": int(plan.paste is not None),
        "abandoned": int(plan.abandoned), "pii": len(plan.planted)})
    edit_time = None

    def clock(pos: int) -> datetime:
        typed = pos - a
        if plan.paste:
            typed -= max(0, min(pos, plan.paste[1]) - plan.paste[0])  # pasting takes no time
        pauses = sum(1 for t in plan.triggers if t.pos < pos) * 2.0
        return plan.start + timedelta(seconds=typed / p.chars_per_second + pauses)

    end_time = clock(plan.end_pos) + timedelta(seconds=5)
    if plan.unrelated_edit:
        # After the last proposal, so that every prompt shows the document as it stood.
        last = clock(plan.triggers[-1].pos) if plan.triggers else plan.start
        edit_time = last + (end_time - last) / 2

    def document(at: datetime, typo: bool = False) -> str:
        # The furthest position typed by `at`: the clock grows with the position, so search it.
        lo, hi = a, plan.end_pos
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if clock(mid) <= at:
                lo = mid
            else:
                hi = mid - 1
        head = plan.text[:lo]
        if typo:
            line_start = head.rfind("\n", 0, len(head) - 1) + 1
            j = next((k for k in range(len(head) - 2, line_start, -1) if head[k].isalpha() and head[k - 1].isalpha()),
                     None)
            if j is not None:
                head = head[: j - 1] + head[j] + head[j - 1] + head[j + 1 :]
        body = head + plan.text[b:]
        if plan.unrelated_edit and edit_time is not None and at >= edit_time:
            off, inserted = plan.unrelated_edit
            body = body[:off] + inserted + body[off:]
        return body

    snapshot_times: list[tuple[datetime, str, bool]] = []
    for i, (trigger, proposal) in enumerate(zip(plan.triggers, proposals)):
        cid = f"{plan.session_id}-c{i:02d}"
        shown_at = clock(trigger.pos)
        latency = rng.uniform(60, 400)
        target_truth = plan.text[trigger.pos : b]
        accepted = simulated_accept(proposal, target_truth, p.tau)
        lines_k = max(1, len(proposal.splitlines()))
        target = first_lines(target_truth, lines_k)
        accepted_text = proposal
        partial = accepted and len(proposal.splitlines()) > 1 and rng.random() < p.partial_accept_rate
        if partial:
            accepted_text = proposal.splitlines(keepends=True)[0]
        events.append((shown_at, {**common, "event": "completion_shown", "completion_id": cid, "model": model_name,
                                  "cursor": trigger.pos, "prefix": plan.text[: trigger.pos],
                                  "suffix": plan.text[b:], "proposal": proposal, "latency_ms": round(latency, 1)}))
        decided_at = shown_at + timedelta(milliseconds=latency + rng.uniform(300, 2500))
        if accepted:
            events.append((decided_at, {**common, "event": "completion_accepted", "completion_id": cid,
                                        "accepted_text": accepted_text}))
        else:
            reason = "typed_over" if trigger.mid_line else rng.choice(("dismissed", "escaped", "typed_over"))
            events.append((decided_at, {**common, "event": "completion_rejected", "completion_id": cid,
                                        "reason": reason}))
        for n, delay in enumerate(SNAPSHOT_DELAYS_S):
            snapshot_times.append((decided_at + timedelta(seconds=delay), "interval", n == 0 and i in plan.typos))
        out.completions += 1
        out.accepted += accepted
        out.target_chars += len(target)
        out.surviving += surviving_chars(accepted_text, target) if accepted else 0
        out.kept += matching_chars(accepted_text, target_truth) if accepted else 0
        out.noise["typo"] += int(i in plan.typos)
        truth.append({"type": "completion", "completion_id": cid, "session_id": plan.session_id,
                      "user_id": p.user_id, "path": plan.file.path, "split": plan.split, "cursor": trigger.pos,
                      "mid_line": trigger.mid_line, "proposal": proposal, "truth": first_lines(target_truth, 10),
                      "accepted": accepted, "partial": partial, "tau": round(p.tau, 3),
                      "es": round(edit_similarity("\n".join(proposal.splitlines()), target), 4) if proposal else 0.0,
                      "es_basis": target, "typo_snapshot": i in plan.typos})
    if not plan.abandoned:
        snapshot_times.append((end_time, "save", False))
        snapshot_times.append((end_time + timedelta(seconds=2), "close", False))
    seq = 0
    for at, trigger_kind, typo in sorted(snapshot_times, key=lambda x: x[0]):
        events.append((at, {**common, "event": "document_snapshot", "document": document(at, typo),
                            "trigger": trigger_kind, "seq": seq}))
        seq += 1
    if not plan.abandoned:
        events.append((end_time + timedelta(seconds=3), {**common, "event": "document_closed"}))
    events.sort(key=lambda e: e[0])
    for n, (at, event) in enumerate(events):
        event["ts"] = format_ts(at)
        event["event_id"] = f"{plan.session_id}-e{n:03d}"
    out.events = [e for _, e in events]
    truth.append({"type": "session", "session_id": plan.session_id, "user_id": p.user_id, "path": plan.file.path,
                  "split": plan.split, "region": list(plan.region), "abandoned": plan.abandoned,
                  "paste": list(plan.paste) if plan.paste else None,
                  "unrelated_edit": plan.unrelated_edit is not None, "planted": plan.planted})
    return out
