"""The warehouse as Parquet partition files: `ECHO_WAREHOUSE=parquet:<folder | s3://bucket/prefix>`.

The same tables and views as the DuckDB file, without its single writer: every table is a set of
files, one per day (`partition_files`), so workers materialize different days at once.

* A reading connection is an in-memory DuckDB whose tables are views over the files.
* A writing connection is a scratch DuckDB file loaded with the partitions the writer may read
  (`window`: the days it works on, with the history it consults; all days without one). When the
  writer is done, each partition whose rows changed is written to its file, and a partition left
  empty loses its file. A failed writer changes no file.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb

from echo_dagster import env, schema
from echo_dagster.partition_files import PartitionFiles

PREFIX = "parquet:"


def is_parquet(url) -> bool:
    return str(url).startswith(PREFIX)


class ParquetFiles:
    """The Parquet backend of `warehouse`: `connect` and `attach` as the DuckDB file's."""

    def __init__(self, url: str):
        self.url = url
        self.files = PartitionFiles(url[len(PREFIX):], env.echo_home() / "parquet-cache")

    @contextlib.contextmanager
    def connect(self, read_only: bool, wait_s: float, window: tuple[date, date] | None
                ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A reader's in-memory views over the files, or a writer's scratch file (see the module)."""
        if read_only:
            with self._views() as con:
                yield con
            return
        with self._scratch(window) as db:
            con = duckdb.connect(str(db))
            try:
                yield con
            finally:
                con.close()

    @contextlib.contextmanager
    def attach(self, con: duckdb.DuckDBPyConnection, alias: str, wait_s: float,
               window: tuple[date, date] | None) -> Iterator[str]:
        with self._scratch(window) as db:
            con.execute(f"ATTACH '{db}' AS {alias}")
            try:
                yield alias
            finally:
                con.execute("USE memory")
                con.execute(f"DETACH {alias}")

    @contextlib.contextmanager
    def _views(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = duckdb.connect()
        try:
            schema.create(con)
            for table in schema.PARTITION_KEY:
                paths = [str(p) for p in self.files.files(table).values()]
                if paths:
                    # The empty table first: columns added since a file was written read as NULL.
                    con.execute(f"ALTER TABLE {table} RENAME TO _{table}_columns")
                    con.execute(f"CREATE VIEW {table} AS SELECT * FROM _{table}_columns UNION ALL BY NAME "
                                f"SELECT * FROM read_parquet({paths}, union_by_name = true)")
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def _scratch(self, window: tuple[date, date] | None) -> Iterator[Path]:
        """A DuckDB file holding the partitions in `window`; after the block, what changed in it is
        written back to the files. Yields the scratch file's path, for one connection at a time."""
        folder = Path(tempfile.mkdtemp(prefix="echo-scratch-"))
        db = folder / "scratch.duckdb"
        try:
            with duckdb.connect(str(db)) as con:
                schema.create(con)
                for table in schema.PARTITION_KEY:
                    paths = [str(p) for p in self.files.files(table, lambda day: _in_window(day, window)).values()]
                    if paths:
                        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet({paths}, "
                                    "union_by_name = true)")
                before = _fingerprints(con)
            yield db
            with duckdb.connect(str(db)) as con:
                after = _fingerprints(con)
                for (table, day), print_ in after.items():
                    if before.get((table, day)) != print_:
                        out = folder / f"{table}-{day.isoformat()}.parquet"
                        con.execute(f"COPY (SELECT * FROM {table} WHERE {schema.PARTITION_KEY[table]} = $day) "
                                    f"TO '{out}' (FORMAT parquet)", {"day": day})
                        self.files.publish(table, day, out)
                for table, day in before.keys() - after.keys():
                    self.files.remove(table, day)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _in_window(day: date, window: tuple[date, date] | None) -> bool:
    return window is None or window[0] <= day <= window[1]


def _fingerprints(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, date], tuple]:
    prints = {}
    for table, key in schema.PARTITION_KEY.items():
        for day, rows, digest in con.execute(f"SELECT {key}, count(*), sum(hash(t))::VARCHAR FROM {table} t "
                                             "GROUP BY ALL").fetchall():
            prints[(table, day)] = (rows, digest)
    return prints
