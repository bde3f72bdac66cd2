"""Build one daily partition of `refined_targets` from `raw_sessions`, streaming session by session."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date

import duckdb
import pyarrow as pa

from echo_dagster import warehouse
from echo_dagster.harvest.refine import RefineSettings, refine_session

TARGET_COLUMNS = (
    ("completion_id", "VARCHAR"), ("session_id", "VARCHAR"), ("user_id", "VARCHAR"), ("tenant_id", "VARCHAR"),
    ("repo", "VARCHAR"), ("path", "VARCHAR"), ("language", "VARCHAR"), ("model", "VARCHAR"),
    ("shown_ts", "TIMESTAMP"), ("proposal", "VARCHAR"), ("decision", "VARCHAR"), ("accepted_text", "VARCHAR"),
    ("source_kind", "VARCHAR"), ("target", "VARCHAR"), ("es", "DOUBLE"), ("survived", "DOUBLE"),
    ("reason", "VARCHAR"), ("pasted_share", "DOUBLE"), ("document_id", "VARCHAR"), ("target_start", "BIGINT"),
)
TARGETS_DDL = (
    "CREATE TABLE IF NOT EXISTS refined_targets (partition_date DATE NOT NULL, "
    + ", ".join(f'"{n}" {t}' for n, t in TARGET_COLUMNS) + ")"
)
# The final documents, each once: a session's completions share theirs, and a row holding its own
# copy of prefix and suffix would write the document again for every completion.
DOCUMENTS_DDL = ("CREATE TABLE IF NOT EXISTS final_documents (partition_date DATE NOT NULL, document_id VARCHAR, "
                 "document VARCHAR)")
# prefix' and suffix' as columns, for SQL readers.
EXAMPLES_VIEW = """CREATE OR REPLACE VIEW refined_examples AS
SELECT t.* EXCLUDE (document_id, target_start),
       substring(d.document, 1, t.target_start) AS prefix,
       substring(d.document, t.target_start + length(t.target) + 1) AS suffix
FROM refined_targets t LEFT JOIN final_documents d USING (partition_date, document_id)"""
_ARROW = {"VARCHAR": pa.string(), "TIMESTAMP": pa.timestamp("us"), "DOUBLE": pa.float64(), "BIGINT": pa.int64()}
_SCHEMA = pa.schema([(n, _ARROW[t]) for n, t in TARGET_COLUMNS])
_DOCUMENTS = pa.schema([("document_id", pa.string()), ("document", pa.string())])
_EVENT_FIELDS = ("session_id", "event", "ts", "completion_id", "user_id", "tenant_id", "repo", "path", "language",
                 "model", "prefix", "suffix", "proposal", "accepted_text", "document", "trigger")


@dataclass(frozen=True)
class RefineResult:
    completions: int
    with_target: int
    by_reason: dict[str, int] = field(default_factory=dict)
    by_source_kind: dict[str, int] = field(default_factory=dict)
    mean_es: float | None = None


def refine_partition(con: duckdb.DuckDBPyConnection, day: date, settings: RefineSettings = RefineSettings(),
                     batch_rows: int = 2_000) -> RefineResult:
    """Replace partition `day` of refined_targets (in one transaction) from raw_sessions."""
    create_tables(con)
    out: list[dict] = []
    session: list[dict] = []
    held = 0  # bytes of text the current session holds
    written: set[str] = set()  # ids of the documents written
    with warehouse.replacing_partition(con, day, "refined_targets", "final_documents"):
        for chunk in _session_events(con.cursor(), day, batch_rows):
            for values in chunk:
                event = dict(zip(_EVENT_FIELDS, values))
                if session and event["session_id"] != session[0]["session_id"]:
                    out += refine_session(session, settings, too_large=held > settings.max_session_bytes)
                    session, held = [], 0
                held += sum(len(event[k] or "") for k in ("document", "prefix", "suffix"))
                if held > settings.max_session_bytes:
                    event["document"] = None  # keep the events, not their documents: memory stays bounded
                session.append(event)
            if len(out) >= batch_rows:
                _append(con, day, out, written)
        if session:
            out += refine_session(session, settings, too_large=held > settings.max_session_bytes)
        _append(con, day, out, written)
    rows = con.execute(
        "SELECT count(*), count(target), avg(es) FROM refined_targets WHERE partition_date = $day", {"day": day}
    ).fetchone()
    reasons = dict(con.execute("SELECT reason, count(*) FROM refined_targets WHERE partition_date = $day "
                               "AND reason IS NOT NULL GROUP BY ALL ORDER BY ALL", {"day": day}).fetchall())
    kinds = dict(con.execute("SELECT source_kind, count(*) FROM refined_targets WHERE partition_date = $day "
                             "AND source_kind IS NOT NULL GROUP BY ALL ORDER BY ALL", {"day": day}).fetchall())
    return RefineResult(rows[0], rows[1], reasons, kinds, rows[2])


def _session_events(reader: duckdb.DuckDBPyConnection, day: date, batch_rows: int,
                    sessions_per_query: int = 500):
    """The day's events in session order, a chunk of rows at a time. A few hundred sessions are
    sorted at a time: sorting a whole day of documents at once takes more memory than DuckDB is
    given."""
    ids = [i for i, in reader.execute("SELECT DISTINCT session_id FROM raw_sessions WHERE partition_date = $day "
                                      "ORDER BY 1", {"day": day}).fetchall()]
    for n in range(0, len(ids), sessions_per_query):
        group = ids[n : n + sessions_per_query]
        reader.execute(
            f"SELECT {', '.join(_EVENT_FIELDS)} FROM raw_sessions WHERE partition_date = $day "
            "AND session_id BETWEEN $first AND $last ORDER BY session_id, session_seq",
            {"day": day, "first": group[0], "last": group[-1]},
        )
        while chunk := reader.fetchmany(batch_rows):
            yield chunk


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    """refined_targets (with any column added since the warehouse was made), final_documents and
    the view refined_examples."""
    con.execute(TARGETS_DDL)
    for name, kind in TARGET_COLUMNS:
        con.execute(f'ALTER TABLE refined_targets ADD COLUMN IF NOT EXISTS "{name}" {kind}')
    for name in ("prefix", "suffix"):  # held in each row before final_documents
        con.execute(f"ALTER TABLE refined_targets DROP COLUMN IF EXISTS {name}")
    con.execute(DOCUMENTS_DDL)
    con.execute(EXAMPLES_VIEW)


def _append(con: duckdb.DuckDBPyConnection, day: date, rows: list[dict], written: set[str]) -> None:
    if not rows:
        return
    documents = {}
    for row in rows:
        document = row.pop("document")
        if document is not None:
            # Within a batch the rows of a session share the document object: hash it once.
            key = id(document)
            if key not in documents:
                documents[key] = (hashlib.sha1(document.encode()).hexdigest(), document)
            row["document_id"] = documents[key][0]
    new = [(i, d) for i, d in dict(documents.values()).items() if i not in written]
    written.update(i for i, _ in new)
    for table, batch in (("final_documents", pa.Table.from_pylist(
            [{"document_id": i, "document": d} for i, d in new], schema=_DOCUMENTS)),
            ("refined_targets", pa.Table.from_pylist(rows, schema=_SCHEMA))):
        con.register("batch", batch)
        con.execute(f"INSERT INTO {table} BY NAME SELECT $day AS partition_date, * FROM batch", {"day": day})
        con.unregister("batch")
    rows.clear()


def completions_shown(con: duckdb.DuckDBPyConnection, day: date) -> int:
    return con.execute(
        "SELECT count(DISTINCT completion_id) FROM raw_sessions WHERE partition_date = $day "
        "AND event = 'completion_shown'", {"day": day}
    ).fetchone()[0]
