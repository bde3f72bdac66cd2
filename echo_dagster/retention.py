"""Retention and opt-out purges, with an audit record of each.

* **Expiry** — raw experience is kept `keep_days` days: landing folders (by arrival day) and the
  warehouse partitions of the tables that hold raw text (`RAW_TABLES`) older than that are deleted.
  What stays: `filtered_dataset` (de-identified), `ingest_log` (counts), checkpoints, reports.
* **Opt-out** — a user or tenant who opts out is purged from the past as well: their rows from
  every table, their events from every landing file (rewritten without them), and every checkpoint
  trained on partitions that held their training rows is marked in the registry.

Every purge appends a row to `audit_log` (when, what, whom, how many of what).
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import duckdb

from echo_dagster.landing import LandingStore

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


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {name for (name,) in con.execute("SELECT table_name FROM information_schema.tables "
                                             "WHERE table_type = 'BASE TABLE'").fetchall()}


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
    present = _tables(con)
    con.execute("BEGIN")
    for table in RAW_TABLES:
        if table in present:
            (n,) = con.execute(f"DELETE FROM {table} WHERE partition_date < $cutoff", {"cutoff": cutoff}).fetchone()
            report.rows[table] = n
    _audit(con, report)
    con.execute("COMMIT")
    return report


def purge_subject(con: duckdb.DuckDBPyConnection, store: LandingStore, registry, *, user_id: str | None = None,
                  tenant_id: str | None = None) -> PurgeReport:
    """Remove one opted-out user (or tenant) from the landing zone and every table; mark the
    checkpoints trained on partitions that held their training rows."""
    if (user_id is None) == (tenant_id is None):
        raise ValueError("purge one user_id or one tenant_id")
    column, value = ("user_id", user_id) if user_id is not None else ("tenant_id", tenant_id)
    report = PurgeReport("opt_out", f"{column.removesuffix('_id')}:{value}")
    pattern = re.compile(rb'"' + column.encode() + rb'"\s*:\s*"' + re.escape(json.dumps(value)[1:-1].encode()) + rb'"')
    for day in store.days():
        for file in store.list_day(day):
            removed = _rewrite_without(store, file, pattern)
            if removed:
                report.landing_files += 1
                report.landing_lines += removed
    present = _tables(con)
    trained_on: set[str] = set()
    if "filtered_dataset" in present:
        trained_on = {d.isoformat() for (d,) in con.execute(
            f"SELECT DISTINCT partition_date FROM filtered_dataset WHERE {column} = $v AND drop_reason IS NULL "
            "AND split = 'train'", {"v": value}).fetchall()}
    con.execute("BEGIN")
    if {"final_documents", "refined_targets"} <= present:
        # Documents of the subject's sessions, before their refined rows go.
        (n,) = con.execute(f"DELETE FROM final_documents WHERE (partition_date, document_id) IN (SELECT "
                           f"partition_date, document_id FROM refined_targets WHERE {column} = $v)",
                           {"v": value}).fetchone()
        report.rows["final_documents"] = n
    for table in ("raw_sessions", "refined_targets", "filtered_dataset"):
        if table in present:
            (n,) = con.execute(f"DELETE FROM {table} WHERE {column} = $v", {"v": value}).fetchone()
            report.rows[table] = n
    if "quarantine" in present:  # raw lines that failed validation may still name the subject
        (n,) = con.execute("DELETE FROM quarantine WHERE regexp_matches(raw, $p)",
                           {"p": pattern.pattern.decode()}).fetchone()
        report.rows["quarantine"] = n
    for name in registry.names() if registry is not None else []:
        trained = set(registry.meta(name).get("data", {}).get("rows_per_partition", {}))
        if trained & trained_on:
            registry.mark(name, {"reason": "trained on opted-out data", "subject": report.subject,
                                 "partitions": sorted(trained & trained_on)})
            report.checkpoints_marked.append(name)
    _audit(con, report)
    con.execute("COMMIT")
    return report


def _rewrite_without(store: LandingStore, file, pattern: re.Pattern) -> int:
    with store.open(file) as raw:
        data = raw.read()
    try:
        text = gzip.decompress(data) if file.compressed else data
    except (OSError, EOFError):  # a cut-off gzip file: what can be read of it
        text = _readable_gzip(data)
    lines = text.splitlines(keepends=True)
    kept = [line for line in lines if not pattern.search(line)]
    if len(kept) == len(lines):
        return 0
    body = b"".join(kept)
    store.write(file.name, gzip.compress(body, mtime=0) if file.compressed else body)
    return len(lines) - len(kept)


def _readable_gzip(data: bytes) -> bytes:
    import zlib

    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
