"""The warehouse's schema, owned in one place: every table's columns, the views, and how an older
warehouse is brought up to date.

Both warehouses (a DuckDB file, or Parquet files per table and day) create all of it on their first
connection, so that every reader — a sensor on a brand-new instance, a check, a report — finds
every table and view, empty rather than missing. Stages import their tables' columns from here;
nothing else writes a column list.
"""

from __future__ import annotations

import hashlib

import duckdb
import pyarrow as pa

# (name, DuckDB type) of an event as stored; the order is the column order of `raw_sessions`.
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
# A refined row: one per completion shown, with its target or the reason it has none. Its prefix'
# and suffix' are cut from `final_documents` (view `refined_examples`).
TARGET_COLUMNS: tuple[tuple[str, str], ...] = (
    ("completion_id", "VARCHAR"), ("session_id", "VARCHAR"), ("user_id", "VARCHAR"), ("tenant_id", "VARCHAR"),
    ("repo", "VARCHAR"), ("path", "VARCHAR"), ("language", "VARCHAR"), ("model", "VARCHAR"),
    ("shown_ts", "TIMESTAMP"), ("proposal", "VARCHAR"), ("decision", "VARCHAR"), ("accepted_text", "VARCHAR"),
    ("source_kind", "VARCHAR"), ("target", "VARCHAR"), ("es", "DOUBLE"), ("survived", "DOUBLE"),
    ("reason", "VARCHAR"), ("pasted_share", "DOUBLE"), ("document_id", "VARCHAR"), ("target_start", "BIGINT"),
    ("region_end", "BIGINT"),  # where the region the user kept ends, before trimming cut the target from it
)
# A filtered row: every refined row, with its split and, when it does not go further, its reason.
FILTERED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("completion_id", "VARCHAR"), ("session_id", "VARCHAR"), ("user_id", "VARCHAR"), ("tenant_id", "VARCHAR"),
    ("repo", "VARCHAR"), ("path", "VARCHAR"), ("language", "VARCHAR"), ("model", "VARCHAR"),
    ("source_kind", "VARCHAR"), ("decision", "VARCHAR"), ("proposal", "VARCHAR"), ("accepted_text", "VARCHAR"),
    ("prefix", "VARCHAR"), ("suffix", "VARCHAR"), ("target", "VARCHAR"), ("es", "DOUBLE"), ("survived", "DOUBLE"),
    ("split", "VARCHAR"), ("drop_reason", "VARCHAR"), ("dedup_key", "VARCHAR"), ("pasted_share", "DOUBLE"),
)

_DAY = (("partition_date", "DATE NOT NULL"),)
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "raw_sessions": _DAY + (("session_seq", "INTEGER NOT NULL"),) + EVENT_COLUMNS + PROVENANCE_COLUMNS,
    "quarantine": _DAY + (("source_file", "VARCHAR NOT NULL"), ("line_no", "BIGINT NOT NULL"),
                          ("reason", "VARCHAR NOT NULL"), ("detail", "VARCHAR NOT NULL"), ("raw", "VARCHAR NOT NULL"),
                          ("raw_encoding", "VARCHAR NOT NULL")),
    "ingest_log": (("partition_date", "DATE PRIMARY KEY"), ("files", "INTEGER NOT NULL"),
                   ("lines_read", "BIGINT NOT NULL"), ("late_adopted", "BIGINT NOT NULL"), ("kept", "BIGINT NOT NULL"),
                   ("duplicates", "BIGINT NOT NULL"), ("quarantined", "BIGINT NOT NULL"),
                   ("deferred_to_previous", "BIGINT NOT NULL"), ("materialized_at", "TIMESTAMP NOT NULL"),
                   ("opted_out", "BIGINT")),  # events of opted-out users and tenants, dropped at ingest
    "refined_targets": _DAY + TARGET_COLUMNS,
    # The final documents, each once: a session's completions share theirs, and a row holding its
    # own copy of prefix and suffix would write the document again for every completion.
    "final_documents": _DAY + (("document_id", "VARCHAR"), ("document", "VARCHAR")),
    "filtered_dataset": _DAY + FILTERED_COLUMNS,
    "audit_log": (("purged_at", "TIMESTAMP NOT NULL"), ("action", "VARCHAR NOT NULL"), ("subject", "VARCHAR"),
                  ("detail", "VARCHAR NOT NULL")),
}
# The day each table's rows belong to (the Parquet warehouse keeps one file per table and day).
PARTITION_KEY = {table: "partition_date" for table in TABLES} | {"audit_log": "CAST(purged_at AS DATE)"}
# Columns an older warehouse has and this one does not.
DROPPED_COLUMNS = {"refined_targets": ("prefix", "suffix")}  # held in each row before final_documents

VIEWS = {
    # prefix' and suffix' as columns, for SQL readers.
    "refined_examples": """SELECT t.* EXCLUDE (document_id, target_start, region_end),
       substring(d.document, 1, t.target_start) AS prefix,
       substring(d.document, t.target_start + length(t.target) + 1) AS suffix
FROM refined_targets t LEFT JOIN final_documents d USING (partition_date, document_id)""",
    "training_examples": "SELECT * FROM filtered_dataset WHERE drop_reason IS NULL AND split = 'train'",
    # One row of each (tenant, file, prefix tail, target): a developer who asks twice at the same
    # place is one test, not two. The first by day and id, whatever order the days were filtered in.
    "eval_set": "SELECT * FROM filtered_dataset WHERE drop_reason IS NULL AND split = 'eval' "
                "QUALIFY row_number() OVER (PARTITION BY coalesce(dedup_key, completion_id) "
                "ORDER BY partition_date, completion_id) = 1",
}


def _ddl() -> list[str]:
    statements = []
    for table, columns in TABLES.items():
        statements.append(f"CREATE TABLE IF NOT EXISTS {table} ("
                          + ", ".join(f'"{name}" {kind}' for name, kind in columns) + ")")
        # A warehouse made by an older version: new columns are added (nullable), old ones dropped.
        statements += [f'ALTER TABLE {table} ADD COLUMN IF NOT EXISTS "{name}" {kind.split()[0]}'
                       for name, kind in columns]
        statements += [f'ALTER TABLE {table} DROP COLUMN IF EXISTS "{name}"' for name in DROPPED_COLUMNS.get(table, ())]
    statements += [f"CREATE OR REPLACE VIEW {name} AS {sql}" for name, sql in VIEWS.items()]
    return statements


_STATEMENTS = _ddl()
# Changes whenever the schema does, so that a warehouse knows whether it is up to date.
VERSION = hashlib.sha256("\n".join(_STATEMENTS).encode()).hexdigest()[:16]


def is_current(con: duckdb.DuckDBPyConnection) -> bool:
    try:
        row = con.execute("SELECT version FROM echo_schema").fetchone()
    except duckdb.CatalogException:
        return False
    return row is not None and row[0] == VERSION


def create(con: duckdb.DuckDBPyConnection) -> None:
    """Every table and view in the connection's current database, an older schema brought up to date."""
    if is_current(con):
        return
    for statement in _STATEMENTS:
        con.execute(statement)
    con.execute("CREATE OR REPLACE TABLE echo_schema AS SELECT $v AS version", {"v": VERSION})


_ARROW = {"VARCHAR": pa.string(), "TIMESTAMP": pa.timestamp("us"), "DOUBLE": pa.float64(), "BIGINT": pa.int64(),
          "INTEGER": pa.int32(), "DATE": pa.date32()}


def arrow_schema(columns: tuple[tuple[str, str], ...]) -> pa.Schema:
    """The Arrow schema of rows with these columns, for batches inserted BY NAME."""
    return pa.schema([(name, _ARROW[kind.split()[0]]) for name, kind in columns])
