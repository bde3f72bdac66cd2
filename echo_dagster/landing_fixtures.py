"""A small, deterministic generator of schema-v1 landing files, bad lines included.

For the tests and the ingestion benchmark: sessions of a
user writing a Python file with completions shown, accepted or rejected, and snapshots after the
decision; duplicate deliveries, events delivered a day late, shuffled lines, gzip and plain files,
and a catalogue of broken lines. It returns what ingestion must find, per partition.
"""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from echo_dagster.events import format_ts
from echo_dagster.landing import LandingStore, day_folder

_CODE = """\
def load_config(path):
    with open(path) as handle:
        return json.load(handle)


class RateLimiter:
    def __init__(self, rate, burst):
        self.rate = rate
        self.burst = burst
        self.tokens = burst

    def allow(self, now):
        elapsed = now - self.last
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def chunked(items, size):
    for start in range(0, len(items), size):
        yield items[start:start + size]
""".splitlines(keepends=True)

# Every broken-line kind the generator can plant, by the reason ingestion must give it.
BAD_LINE_KINDS = (
    "bad_json", "invalid_utf8", "nul_byte", "blank_line", "not_an_object", "missing_field", "bad_field_type",
    "bad_field_value", "unknown_event", "unsupported_schema_version", "line_too_long",
)


@dataclass(frozen=True)
class FixtureSpec:
    days: tuple[date, ...]
    sessions_per_day: int = 6
    completions_per_session: int = 3
    snapshots_per_completion: int = 2
    files_per_day: int = 2
    seed: int = 0
    late_share: float = 0.1  # share of events delivered into the next day's folder
    duplicate_share: float = 0.05  # share of events delivered twice
    bad_lines_per_day: int = len(BAD_LINE_KINDS)  # cycles through BAD_LINE_KINDS
    truncated_gzip_per_day: int = 0  # extra files whose gzip stream is cut off after a few lines
    unsupported_files_per_day: int = 0
    long_line_bytes: int = 5 * 1024 * 1024  # > the default 4 MiB line limit
    tenants: int = 2
    users: int = 4
    label: str = "ide"  # names the files and sessions, so that several runs can fill one day


@dataclass
class Expected:
    """What `raw_sessions` must find for one partition."""

    kept: int = 0
    duplicates: int = 0
    late_adopted: int = 0
    deferred_to_previous: int = 0
    lines: int = 0
    quarantine: Counter = field(default_factory=Counter)
    sessions: set = field(default_factory=set)


def write_landing_fixtures(store: LandingStore, spec: FixtureSpec) -> dict[date, Expected]:
    rng = random.Random(spec.seed)
    folders: dict[date, list[bytes]] = defaultdict(list)
    expected: dict[date, Expected] = defaultdict(Expected)
    sessions = []
    for day in spec.days:
        for n in range(spec.sessions_per_day):
            events = _session_events(rng, spec, day, n)
            delivered = []
            for event in events:
                on_time = _ts(event).date()
                late = on_time + timedelta(days=1)
                delivered.append((late if rng.random() < spec.late_share else on_time, event))
                if rng.random() < spec.duplicate_share:
                    delivered.append((rng.choice((on_time, late)), event))
            sessions.append(delivered)
    for delivered in sessions:
        owner = min(arrival for arrival, _ in delivered)
        seen = set()
        for arrival, event in delivered:
            folders[arrival].append(_dump(event))
            exp = expected[owner]
            exp.sessions.add(event["session_id"])
            expected[arrival].lines += 1
            if arrival > owner + timedelta(days=1):
                raise ValueError("fixture delivered an event more than a day late; lower late_share")
            if arrival != owner:
                exp.late_adopted += 1
            if event["event_id"] in seen:
                exp.duplicates += 1
            else:
                seen.add(event["event_id"])
                exp.kept += 1
    for day in spec.days:
        for i in range(spec.bad_lines_per_day):
            kind = BAD_LINE_KINDS[i % len(BAD_LINE_KINDS)]
            folders[day].append(_bad_line(kind, rng, day, spec))
            expected[day].quarantine[kind] += 1
            expected[day].lines += 1

    for day, lines in sorted(folders.items()):
        rng.shuffle(lines)  # out of order, across files too
        for part in range(spec.files_per_day):
            chunk = lines[part :: spec.files_per_day]
            body = b"".join(line + b"\n" for line in chunk)
            if part % 2:
                store.write(f"{day_folder(day)}/{spec.label}-{part}.jsonl.gz", gzip.compress(body, mtime=0))
            else:
                store.write(f"{day_folder(day)}/{spec.label}-{part}.jsonl", body)
        for part in range(spec.truncated_gzip_per_day):
            # Three good events of a session of its own, then the stream is cut off.
            events = _session_events(rng, spec, day, 10_000 + part)[:3]
            data = gzip.compress(b"".join(_dump(e) + b"\n" for e in events) + b"x" * 200, mtime=0)
            store.write(f"{day_folder(day)}/{spec.label}-cut-{part}.jsonl.gz", data[: len(data) - 12])
            exp = expected[day]
            exp.kept += len(events)
            exp.sessions.add(events[0]["session_id"])
            exp.quarantine["gzip_truncated"] += 1
            exp.lines += len(events) + 1
        for part in range(spec.unsupported_files_per_day):
            store.write(f"{day_folder(day)}/{spec.label}-notes-{part}.txt", b"not events\n")
            expected[day].quarantine["unsupported_file"] += 1
            expected[day].lines += 1
    for day, exp in expected.items():
        # Events in this folder that belong to the previous day's sessions.
        prev = expected.get(day - timedelta(days=1))
        if prev:
            exp.deferred_to_previous = prev.late_adopted
    return dict(expected)


def _session_events(rng: random.Random, spec: FixtureSpec, day: date, n: int) -> list[dict]:
    user = rng.randrange(spec.users)
    session_id = f"{spec.label}-{day.isoformat()}-{n:05d}"
    # Sessions last under an hour and end before midnight; late delivery is the only way across days.
    start = datetime.combine(day, time(), timezone.utc) + timedelta(seconds=rng.randrange(82_800))
    common = {
        "schema_version": 1,
        "session_id": session_id,
        "user_id": f"u{user}",
        "tenant_id": f"t{user % spec.tenants}",
        "repo": f"repo-{user % 3}",
        "path": f"src/module_{n % 7}.py",
        "language": "python",
        "client": "fixture/1.0",
    }
    events = []
    clock = start
    cut = 0
    for c in range(spec.completions_per_session):
        cut = min(len(_CODE) - 2, cut + rng.randint(2, 6))
        prefix, truth = "".join(_CODE[:cut]), _CODE[cut]
        suffix = "".join(_CODE[cut + 1 :])
        completion_id = f"{session_id}-c{c}"
        accept = rng.random() < 0.4
        proposal = truth if accept and rng.random() < 0.5 else truth.rstrip() + "  # proposal\n"
        events.append({**common, "event": "completion_shown", "ts": format_ts(clock), "completion_id": completion_id,
                       "model": "fixture-model", "cursor": len(prefix), "prefix": prefix, "suffix": suffix,
                       "proposal": proposal, "latency_ms": float(rng.randint(40, 400))})
        clock += timedelta(seconds=rng.randint(1, 5))
        if accept:
            events.append({**common, "event": "completion_accepted", "ts": format_ts(clock),
                           "completion_id": completion_id, "accepted_text": proposal})
        else:
            events.append({**common, "event": "completion_rejected", "ts": format_ts(clock),
                           "completion_id": completion_id, "reason": rng.choice(["dismissed", "typed_over", "escaped"])})
        document = prefix + truth + suffix
        for s in range(spec.snapshots_per_completion):
            clock += timedelta(seconds=(30, 90, 180, 300)[s % 4])
            events.append({**common, "event": "document_snapshot", "ts": format_ts(clock), "document": document,
                           "trigger": "save" if s == spec.snapshots_per_completion - 1 else "interval",
                           "seq": c * spec.snapshots_per_completion + s})
    clock += timedelta(seconds=5)
    events.append({**common, "event": "document_closed", "ts": format_ts(clock)})
    for i, event in enumerate(events):
        event["event_id"] = f"{session_id}-e{i:03d}"
    return events


def _bad_line(kind: str, rng: random.Random, day: date, spec: FixtureSpec) -> bytes:
    good = _session_events(rng, spec, day, 20_000 + rng.randrange(10**6))[0]
    if kind == "bad_json":
        return _dump(good)[:-7]
    if kind == "invalid_utf8":
        return _dump(good).replace(b"def ", b"d\xff\xfe ", 1)
    if kind == "nul_byte":
        return _dump(good)[:20] + b"\x00" + _dump(good)[20:]
    if kind == "blank_line":
        return b"   "
    if kind == "not_an_object":
        return b'["completion_shown", 1]'
    if kind == "missing_field":
        del good["proposal"]
    elif kind == "bad_field_type":
        good["cursor"] = "twelve"
    elif kind == "bad_field_value":
        good["ts"] = "2026-13-45T99:00:00Z"
    elif kind == "unknown_event":
        good["event"] = "completion_teleported"
    elif kind == "unsupported_schema_version":
        good["schema_version"] = 2
    elif kind == "line_too_long":
        good["prefix"] = "#" * spec.long_line_bytes
    return _dump(good)


def _dump(event: dict) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


def _ts(event: dict) -> datetime:
    return datetime.fromisoformat(event["ts"])
