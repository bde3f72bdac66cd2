"""Build one daily partition of `refined_targets` from `raw_sessions`, streaming session by session."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date

import duckdb
import pyarrow as pa

from echo_dagster import schema, warehouse
from echo_dagster.harvest.refine import RefineSettings, refine_session

_SCHEMA = schema.arrow_schema(schema.TARGET_COLUMNS)
_DOCUMENTS = schema.arrow_schema(schema.TABLES["final_documents"][1:])
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
    out: list[dict] = []
    session: list[dict] = []
    held = 0  # bytes of text the current session holds
    written: set[str] = set()  # ids of the documents written
    with warehouse.replacing_partition(con, day, "refined_targets", "final_documents"):
        for chunk in _session_events(con.cursor(), day, batch_rows):
            for values in chunk:
                event = dict(zip(_EVENT_FIELDS, values))
                if session and (event["tenant_id"], event["session_id"]) != (session[0]["tenant_id"],
                                                                             session[0]["session_id"]):
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
    """The day's events in session order, a chunk of rows at a time. A session is (tenant_id,
    session_id): another tenant's events never join it. A few hundred sessions are sorted at a
    time: sorting a whole day of documents at once takes more memory than DuckDB is given."""
    ids = reader.execute("SELECT DISTINCT tenant_id, session_id FROM raw_sessions WHERE partition_date = $day "
                         "ORDER BY ALL", {"day": day}).fetchall()
    for n in range(0, len(ids), sessions_per_query):
        group = ids[n : n + sessions_per_query]
        reader.execute(
            f"SELECT {', '.join(_EVENT_FIELDS)} FROM raw_sessions WHERE partition_date = $day "
            "AND (tenant_id, session_id) BETWEEN ($first_tenant, $first) AND ($last_tenant, $last) "
            "ORDER BY tenant_id, session_id, session_seq",
            {"day": day, "first_tenant": group[0][0], "first": group[0][1], "last_tenant": group[-1][0],
             "last": group[-1][1]},
        )
        while chunk := reader.fetchmany(batch_rows):
            yield chunk


def _append(con: duckdb.DuckDBPyConnection, day: date, rows: list[dict], written: set[str]) -> None:
    if not rows:
        return
    documents = {}
    for row in rows:
        document = row.pop("document")
        if document is not None:
            # Within a batch the rows of a session share the document object: hash it once. The id
            # is the tenant's: two tenants' equal documents are two rows, and purging one keeps the other.
            key = (row["tenant_id"], id(document))
            if key not in documents:
                digest = hashlib.sha1(f"{row['tenant_id']}\x00{document}".encode()).hexdigest()
                documents[key] = (digest, document)
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
        "SELECT count(DISTINCT (tenant_id, completion_id)) FROM raw_sessions WHERE partition_date = $day "
        "AND event = 'completion_shown'", {"day": day}
    ).fetchone()[0]
