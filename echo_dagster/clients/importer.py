"""`echo-dagster import continue|tabby <path>`: other clients' logs into the landing zone.

Every mapped event is checked against schema v1 before it is written. Each day's events (by event
time) land in `<day>/import-<client>-<hash>.jsonl.gz`; events already in an earlier import file of
that day are left out (their ids come from the client's ids), so importing the same log twice — or
a log that has grown since — adds only what is new.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from echo_dagster.clients.continue_dev import read_continue
from echo_dagster.clients.implicit import to_events
from echo_dagster.clients.records import ReadResult
from echo_dagster.clients.tabby import read_tabby
from echo_dagster.events import parse_event
from echo_dagster.landing import LandingStore, day_folder

READERS = {"continue": read_continue, "tabby": read_tabby}


@dataclass
class ImportSummary:
    client: str
    files: int = 0
    lines: int = 0
    completions: int = 0
    skipped: Counter = field(default_factory=Counter)
    problems: list[dict] = field(default_factory=list)
    inferred: Counter = field(default_factory=Counter)
    decisions: Counter = field(default_factory=Counter)
    with_implicit_snapshot: Counter = field(default_factory=Counter)
    sessions_closed: int = 0
    null_fields: Counter = field(default_factory=Counter)
    events: int = 0
    written: dict = field(default_factory=dict)  # landing file -> events
    already_present: int = 0

    def as_dict(self) -> dict:
        accepted = self.decisions["accepted"]
        return {
            "client": self.client, "files": self.files, "lines": self.lines, "completions": self.completions,
            "skipped": dict(sorted(self.skipped.items())), "problems": self.problems,
            "inferred": dict(sorted(self.inferred.items())), "decisions": dict(sorted(self.decisions.items())),
            "with_implicit_snapshot": dict(sorted(self.with_implicit_snapshot.items())),
            "accepted_with_final_state": round(self.with_implicit_snapshot["accepted"] / accepted, 4) if accepted else None,
            "sessions_closed": self.sessions_closed, "null_fields": dict(sorted(self.null_fields.items())),
            "events": self.events, "written": self.written, "already_present": self.already_present,
        }


def import_logs(client: str, paths: list[str | Path], store: LandingStore, tenant_id: str) -> ImportSummary:
    if client not in READERS:
        raise ValueError(f"unknown client {client!r}: expected one of {sorted(READERS)}")
    files = _files(paths)
    read: ReadResult = READERS[client](_lines(files))
    mapped = to_events(read.completions, tenant_id)
    summary = ImportSummary(client, files=len(files), lines=read.lines, completions=mapped.completions,
                            skipped=read.skipped, problems=read.problems, inferred=read.inferred,
                            decisions=mapped.decisions, with_implicit_snapshot=mapped.with_snapshot,
                            sessions_closed=mapped.closed, null_fields=mapped.nulls, events=len(mapped.events))
    by_day: dict[date, list[tuple[str, bytes]]] = defaultdict(list)
    for event in mapped.events:
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        parsed = parse_event(line)  # a mapping bug fails here, before anything lands
        by_day[parsed.ts.date()].append((event["event_id"], line + b"\n"))
    for day, lines in sorted(by_day.items()):
        present = _ids_present(store, day, client)
        new = [line for event_id, line in lines if event_id not in present]
        summary.already_present += len(lines) - len(new)
        if new:
            body = b"".join(new)
            name = f"{day_folder(day)}/import-{client}-{hashlib.sha256(body).hexdigest()[:16]}.jsonl.gz"
            store.write(name, gzip.compress(body, mtime=0))
            summary.written[name] = len(new)
    return summary


def _files(paths: list[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in (".json", ".jsonl"))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return files


def _lines(files: list[Path]) -> Iterator[tuple[str, bytes]]:
    for f in files:
        with open(f, "rb") as stream:
            for n, line in enumerate(stream, 1):
                yield f"{f}:{n}", line


def _ids_present(store: LandingStore, day: date, client: str) -> set[str]:
    ids: set[str] = set()
    for file in store.list_day(day):
        if Path(file.name).name.startswith(f"import-{client}-"):
            with store.open(file) as raw, gzip.open(raw) as lines:
                ids.update(json.loads(line)["event_id"] for line in lines)
    return ids
