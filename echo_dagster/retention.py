"""Retention and opt-out purges, with an audit record of each.

* **Expiry** — raw experience is kept `keep_days` days: landing folders (by arrival day) and the
  warehouse partitions of the tables that hold raw text (`RAW_TABLES`) older than that are deleted.
  What stays: `filtered_dataset` (de-identified), `ingest_log` (counts), checkpoints, reports.
* **Opt-out** — a user or tenant who opts out is purged from the past as well: their rows from
  every table, their events from every landing file and open capture segment (rewritten without
  them), and every checkpoint trained on partitions that held their training rows is marked in the
  registry. Ingestion drops them too (`ingest.raw_sessions`), so that re-running a day whose
  landing files were rewritten before cannot bring them back.

Every purge appends a row to `audit_log` (when, what, whom, how many of what).
"""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import duckdb
import msgspec

from echo_dagster.landing import NOT_A_FILE, OUTSIDE_LANDING, LandingFile, LandingStore

# Tables whose rows hold raw (not de-identified) text, each partitioned by day.
RAW_TABLES = ("raw_sessions", "quarantine", "refined_targets", "final_documents")


@dataclass
class PurgeReport:
    action: str
    subject: str | None
    landing_files: int = 0  # deleted, or rewritten without the subject
    landing_lines: int = 0  # lines removed from rewritten files
    rows: dict = field(default_factory=dict)  # table -> rows deleted
    checkpoints_marked: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"action": self.action, "subject": self.subject, "landing_files": self.landing_files,
                "landing_lines": self.landing_lines, "rows": self.rows, "checkpoints_marked": self.checkpoints_marked}


def _audit(con: duckdb.DuckDBPyConnection, report: PurgeReport) -> None:
    con.execute("INSERT INTO audit_log VALUES ($purged_at, $action, $subject, $detail)",
                {"purged_at": datetime.now(timezone.utc).replace(tzinfo=None), "action": report.action,
                 "subject": report.subject, "detail": json.dumps(report.as_dict())})


def purge_expired(con: duckdb.DuckDBPyConnection, store: LandingStore, today: date, keep_days: int) -> PurgeReport:
    """Delete landing folders and raw partitions older than `today - keep_days`."""
    if keep_days < 1:
        raise ValueError(f"keep_days must be at least 1, got {keep_days}")
    cutoff = today - timedelta(days=keep_days)
    report = PurgeReport("expire", f"before {cutoff.isoformat()}")
    for day in store.days():
        if day < cutoff:
            for file in store.list_day(day):
                store.delete(file)
                report.landing_files += 1
    con.execute("BEGIN")
    for table in RAW_TABLES:
        (n,) = con.execute(f"DELETE FROM {table} WHERE partition_date < $cutoff", {"cutoff": cutoff}).fetchone()
        report.rows[table] = n
    _audit(con, report)
    con.execute("COMMIT")
    return report


def purge_subject(con: duckdb.DuckDBPyConnection, store: LandingStore, registry, *, user_id: str | None = None,
                  tenant_id: str | None = None, segment_wait_s: float = 600.0) -> PurgeReport:
    """Remove one opted-out user (or tenant) from the landing zone and every table; mark the
    checkpoints trained on partitions that held their training rows.

    A landing line is the subject's when its parsed `user_id` (`tenant_id`) is theirs — however
    the JSON spells it (raw UTF-8 or escaped) — or, for a line that is not a JSON object, when its
    bytes hold the id. Open capture segments are purged too: a crashed server's at once; a live
    server's once it has published them into their day folder (waiting up to `segment_wait_s`)."""
    if (user_id is None) == (tenant_id is None):
        raise ValueError("purge one user_id or one tenant_id")
    column, value = ("user_id", user_id) if user_id is not None else ("tenant_id", tenant_id)
    report = PurgeReport("opt_out", f"{column.removesuffix('_id')}:{value}")
    names = _Subject(column, value)
    for file in _landing_files(store, segment_wait_s):
        removed = _rewrite_without(store, file, names)
        if removed:
            report.landing_files += 1
            report.landing_lines += removed
    trained_on = {d.isoformat() for (d,) in con.execute(
        f"SELECT DISTINCT partition_date FROM filtered_dataset WHERE {column} = $v AND drop_reason IS NULL "
        "AND split = 'train'", {"v": value}).fetchall()}
    con.execute("BEGIN")
    # Documents of the subject's sessions, before their refined rows go.
    (n,) = con.execute(f"DELETE FROM final_documents WHERE (partition_date, document_id) IN (SELECT "
                       f"partition_date, document_id FROM refined_targets WHERE {column} = $v)",
                       {"v": value}).fetchone()
    report.rows["final_documents"] = n
    for table in ("raw_sessions", "refined_targets", "filtered_dataset"):
        (n,) = con.execute(f"DELETE FROM {table} WHERE {column} = $v", {"v": value}).fetchone()
        report.rows[table] = n
    # Raw lines that failed validation may still name the subject.
    named = [(rowid,) for rowid, raw, encoding in con.execute("SELECT rowid, raw, raw_encoding FROM quarantine")
             .fetchall() if names.in_line(base64.b64decode(raw) if encoding == "base64" else raw.encode())]
    if named:
        con.executemany("DELETE FROM quarantine WHERE rowid = ?", named)
    report.rows["quarantine"] = len(named)
    for name in registry.names() if registry is not None else []:
        trained = set(registry.meta(name).get("data", {}).get("rows_per_partition", {}))
        if trained & trained_on:
            registry.mark(name, {"reason": "trained on opted-out data", "subject": report.subject,
                                 "partitions": sorted(trained & trained_on)})
            report.checkpoints_marked.append(name)
    _audit(con, report)
    con.execute("COMMIT")
    return report


class _Ids(msgspec.Struct):
    user_id: object = None
    tenant_id: object = None


_ids = msgspec.json.Decoder(_Ids)


class _Subject:
    """Tells whether a raw landing line is one subject's."""

    def __init__(self, column: str, value: str):
        self.column, self.value = column, value
        # How the id stands in the bytes of a line that is not an object: as UTF-8, or JSON-escaped.
        self.needles = {value.encode(), json.dumps(value)[1:-1].encode()}

    def in_line(self, line: bytes) -> bool:
        try:
            return getattr(_ids.decode(line), self.column) == self.value
        except (msgspec.DecodeError, RecursionError):  # not a JSON object (or junk): its bytes decide
            return any(needle in line for needle in self.needles)


def _landing_files(store: LandingStore, segment_wait_s: float) -> Iterator[LandingFile]:
    """Every landing file the purge must read: the day folders' and the open capture segments'."""
    waiting = []
    for segment in store.open_segments():
        if store.segment_in_use(segment):
            waiting.append(segment)  # its server appends to it: purged once published
        else:
            yield segment
    # Published segments land in the day folders, read after the wait.
    deadline = time.monotonic() + segment_wait_s
    while waiting and any(store.exists(s) for s in waiting):
        if time.monotonic() > deadline:
            raise TimeoutError(f"open capture segments not published within {segment_wait_s:.0f} s: "
                               f"{[s.name for s in waiting if store.exists(s)]}; purge again once they are")
        time.sleep(1.0)
    for day in store.days():
        for file in store.list_day(day):
            if file.problem not in (NOT_A_FILE, OUTSIDE_LANDING):  # never read: not ours to rewrite
                yield file


def _rewrite_without(store: LandingStore, file: LandingFile, subject: _Subject) -> int:
    with store.open(file) as raw:
        data = raw.read()
    try:
        text = gzip.decompress(data) if file.compressed else data
    except (OSError, EOFError):  # a cut-off gzip file: what can be read of it
        text = _readable_gzip(data)
    lines = text.splitlines(keepends=True)
    kept = [line for line in lines if not subject.in_line(line.rstrip(b"\r\n"))]
    if len(kept) == len(lines):
        return 0
    body = b"".join(kept)
    store.write(file.name, gzip.compress(body, mtime=0) if file.compressed else body)
    return len(lines) - len(kept)


def _readable_gzip(data: bytes) -> bytes:
    import zlib

    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
