"""The DuckDB warehouse: table definitions and a connection that waits for another writer.

DuckDB lets one process write a database file at a time, and partitions of a backfill run in
separate processes, so writers hold the file only for the final short transaction and wait (with a
deadline) while another process holds it.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb

# (name, DuckDB type) of an event as it is stored; the order is the column order of `raw_sessions`.
EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "VARCHAR"),
    ("event", "VARCHAR"),
    ("ts", "TIMESTAMP"),  # UTC
    ("session_id", "VARCHAR"),
    ("user_id", "VARCHAR"),
    ("tenant_id", "VARCHAR"),
    ("repo", "VARCHAR"),
    ("path", "VARCHAR"),
    ("language", "VARCHAR"),
    ("client", "VARCHAR"),
    ("completion_id", "VARCHAR"),
    ("model", "VARCHAR"),
    ("cursor", "BIGINT"),
    ("prefix", "VARCHAR"),
    ("suffix", "VARCHAR"),
    ("proposal", "VARCHAR"),
    ("latency_ms", "DOUBLE"),
    ("accepted_text", "VARCHAR"),
    ("reason", "VARCHAR"),
    ("document", "VARCHAR"),
    ("trigger", "VARCHAR"),
    ("seq", "BIGINT"),
)
PROVENANCE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("arrival_date", "DATE"),  # the landing folder the line came from
    ("source_file", "VARCHAR"),
    ("source_line", "BIGINT"),
)

MEMORY_LIMIT = "2GB"  # DuckDB's, per connection; ECHO_DUCKDB_MEMORY overrides it

SCHEMA_DDL = f"""
CREATE TABLE IF NOT EXISTS raw_sessions (
    partition_date DATE NOT NULL,
    session_seq INTEGER NOT NULL,
    {", ".join(f'"{n}" {t}' for n, t in EVENT_COLUMNS + PROVENANCE_COLUMNS)}
);
CREATE TABLE IF NOT EXISTS quarantine (
    partition_date DATE NOT NULL,
    source_file VARCHAR NOT NULL,
    line_no BIGINT NOT NULL,
    reason VARCHAR NOT NULL,
    detail VARCHAR NOT NULL,
    raw VARCHAR NOT NULL,
    raw_encoding VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS ingest_log (
    partition_date DATE PRIMARY KEY,
    files INTEGER NOT NULL,
    lines_read BIGINT NOT NULL,
    late_adopted BIGINT NOT NULL,
    kept BIGINT NOT NULL,
    duplicates BIGINT NOT NULL,
    quarantined BIGINT NOT NULL,
    deferred_to_previous BIGINT NOT NULL,
    materialized_at TIMESTAMP NOT NULL
);
"""


class WarehouseBusy(RuntimeError):
    pass


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    text = str(exc)
    return "lock" in text.lower() and ("Conflicting" in text or "Could not set lock" in text)


def _wait_for_lock(open_fn, path: Path, wait_s: float):
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            return open_fn()
        except duckdb.Error as exc:
            if not _is_lock_conflict(exc):
                raise
            if time.monotonic() > deadline:
                raise WarehouseBusy(f"{path} stayed locked by another process for {wait_s:.0f} s: {exc}") from exc
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 2.0)


@contextlib.contextmanager
def connect(path: str | Path, *, read_only: bool = False, wait_s: float = 600.0,
            window: tuple[date, date] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse (creating its tables), waiting up to `wait_s` for another process's lock.
    A `parquet:` warehouse has no lock; a writer there works on the partitions in `window` (the days
    it writes and the history it reads; all days without one)."""
    if str(path).startswith("parquet:"):
        from echo_dagster import parquet_warehouse

        with (parquet_warehouse.read(path) if read_only else parquet_warehouse.write(path, window)) as con:
            yield con
        return
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = _wait_for_lock(lambda: duckdb.connect(str(path), read_only=read_only), path, wait_s)
    try:
        # Beyond it DuckDB spills to its temp folder beside the file (a day's sort of documents is
        # larger than memory at scale).
        con.execute(f"SET memory_limit = '{os.environ.get('ECHO_DUCKDB_MEMORY', MEMORY_LIMIT)}'")
        if not read_only:
            con.execute(SCHEMA_DDL)
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def replacing_partition(con: duckdb.DuckDBPyConnection, day, *tables: str) -> Iterator[None]:
    """Replace partition `day` of the tables by what the block inserts, in one transaction: readers
    see the old rows or all the new ones, and a failure leaves the old. DuckDB writes a large
    transaction's rows to the file as they come, so memory does not grow with the partition."""
    con.execute("BEGIN TRANSACTION")
    try:
        for table in tables:
            con.execute(f"DELETE FROM {table} WHERE partition_date = $day", {"day": day})
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


@contextlib.contextmanager
def attached(con: duckdb.DuckDBPyConnection, path: str | Path, alias: str, *, wait_s: float = 600.0,
             window: tuple[date, date] | None = None) -> Iterator[str]:
    """Attach the warehouse to a working connection for one write, so that the lock on the file is
    held only for that write; yields the alias. (A `parquet:` warehouse: a scratch file holding the
    partitions in `window`, written back afterwards.)"""
    if str(path).startswith("parquet:"):
        from echo_dagster import parquet_warehouse

        with parquet_warehouse.scratch(path, window) as db:
            con.execute(f"ATTACH '{db}' AS {alias}")
            try:
                yield alias
            finally:
                con.execute("USE memory")
                con.execute(f"DETACH {alias}")
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    quoted = str(path).replace("'", "''")
    _wait_for_lock(lambda: con.execute(f"ATTACH '{quoted}' AS {alias}"), path, wait_s)
    try:
        con.execute(f"USE {alias}")
        con.execute(SCHEMA_DDL)
        con.execute("USE memory")
        yield alias
    finally:
        con.execute("USE memory")
        con.execute(f"DETACH {alias}")
