"""The warehouse: a connection that waits for another writer, on a DuckDB file or Parquet files.

DuckDB lets one process write a database file at a time, and partitions of a backfill run in
separate processes, so writers hold the file only for the final short transaction and wait (with a
deadline) while another process holds it.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import ContextManager, Protocol

import duckdb

from echo_dagster import env, parquet_warehouse, schema


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


class Backend(Protocol):
    """Where the tables live: a DuckDB file, or Parquet files per table and day (`parquet_warehouse`)."""

    def connect(self, read_only: bool, wait_s: float, window: tuple[date, date] | None
                ) -> ContextManager[duckdb.DuckDBPyConnection]: ...

    def attach(self, con: duckdb.DuckDBPyConnection, alias: str, wait_s: float,
               window: tuple[date, date] | None) -> ContextManager[str]: ...


def backend(url: str | Path) -> Backend:
    """The backend of a warehouse URL: `parquet:<folder | s3://…>`, else a DuckDB file's path."""
    return parquet_warehouse.ParquetFiles(str(url)) if parquet_warehouse.is_parquet(url) else DuckDBFile(Path(url))


def connect(url: str | Path, *, read_only: bool = False, wait_s: float = 600.0,
            window: tuple[date, date] | None = None) -> ContextManager[duckdb.DuckDBPyConnection]:
    """Open the warehouse, waiting up to `wait_s` for another process's lock. Every table and view
    of `schema` is there, also on a first connection and on a warehouse an older version made (a
    reader that finds it missing or out of date has it made or brought up to date first). A
    writer of a `parquet:` warehouse works on the partitions in `window` (the days it writes and the
    history it reads; all days without one)."""
    return backend(url).connect(read_only, wait_s, window)


def attached(con: duckdb.DuckDBPyConnection, url: str | Path, alias: str, *, wait_s: float = 600.0,
             window: tuple[date, date] | None = None) -> ContextManager[str]:
    """Attach the warehouse to a working connection for one write, so that the lock on the file is
    held only for that write; yields the alias. (A `parquet:` warehouse: a scratch file holding the
    partitions in `window`, written back afterwards.)"""
    return backend(url).attach(con, alias, wait_s, window)


class DuckDBFile:
    def __init__(self, path: Path):
        self.path = path

    @contextlib.contextmanager
    def connect(self, read_only: bool, wait_s: float, window: tuple[date, date] | None
                ) -> Iterator[duckdb.DuckDBPyConnection]:
        if read_only and not self.path.is_file():
            self._open(False, wait_s).close()  # a reader of a new warehouse finds it empty, not missing
        con = self._open(read_only, wait_s)
        if read_only and not schema.is_current(con):
            con.close()
            self._open(False, wait_s).close()  # brings its schema up to date
            con = self._open(True, wait_s)
        try:
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def attach(self, con: duckdb.DuckDBPyConnection, alias: str, wait_s: float,
               window: tuple[date, date] | None) -> Iterator[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        quoted = str(self.path).replace("'", "''")
        _wait_for_lock(lambda: con.execute(f"ATTACH '{quoted}' AS {alias}"), self.path, wait_s)
        try:
            con.execute(f"USE {alias}")
            schema.create(con)
            con.execute("USE memory")
            yield alias
        finally:
            con.execute("USE memory")
            con.execute(f"DETACH {alias}")

    def _open(self, read_only: bool, wait_s: float) -> duckdb.DuckDBPyConnection:
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        con = _wait_for_lock(lambda: duckdb.connect(str(self.path), read_only=read_only), self.path, wait_s)
        try:
            # Beyond it DuckDB spills to its temp folder beside the file (a day's sort of documents is
            # larger than memory at scale).
            con.execute(f"SET memory_limit = '{env.duckdb_memory()}'")
            if not read_only:
                schema.create(con)
        except BaseException:
            con.close()
            raise
        return con


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
