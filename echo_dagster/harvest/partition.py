"""Build one daily partition of `refined_targets` from `raw_sessions`, streaming session by session."""

from __future__ import annotations

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
    ("source_kind", "VARCHAR"), ("prefix", "VARCHAR"), ("suffix", "VARCHAR"), ("target", "VARCHAR"),
    ("es", "DOUBLE"), ("survived", "DOUBLE"), ("reason", "VARCHAR"), ("pasted_share", "DOUBLE"),
)
TARGETS_DDL = (
    "CREATE TABLE IF NOT EXISTS refined_targets (partition_date DATE NOT NULL, "
    + ", ".join(f'"{n}" {t}' for n, t in TARGET_COLUMNS) + ")"
)
_ARROW = {"VARCHAR": pa.string(), "TIMESTAMP": pa.timestamp("us"), "DOUBLE": pa.float64()}
_SCHEMA = pa.schema([(n, _ARROW[t]) for n, t in TARGET_COLUMNS])
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
    con.execute(TARGETS_DDL)
    for name, kind in TARGET_COLUMNS:  # a warehouse made before a column was added gets it
        con.execute(f'ALTER TABLE refined_targets ADD COLUMN IF NOT EXISTS "{name}" {kind}')
    reader = con.cursor()  # streams the sessions while `con` writes
    reader.execute(
        f"SELECT {', '.join(_EVENT_FIELDS)} FROM raw_sessions WHERE partition_date = $day "
        "ORDER BY session_id, session_seq",
        {"day": day},
    )
    out: list[dict] = []
    session: list[dict] = []
    held = 0  # bytes of text the current session holds
    with warehouse.replacing_partition(con, "refined_targets", day):
        while chunk := reader.fetchmany(batch_rows):
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
                _append(con, day, out)
        if session:
            out += refine_session(session, settings, too_large=held > settings.max_session_bytes)
        _append(con, day, out)
    rows = con.execute(
        "SELECT count(*), count(target), avg(es) FROM refined_targets WHERE partition_date = $day", {"day": day}
    ).fetchone()
    reasons = dict(con.execute("SELECT reason, count(*) FROM refined_targets WHERE partition_date = $day "
                               "AND reason IS NOT NULL GROUP BY ALL ORDER BY ALL", {"day": day}).fetchall())
    kinds = dict(con.execute("SELECT source_kind, count(*) FROM refined_targets WHERE partition_date = $day "
                             "AND source_kind IS NOT NULL GROUP BY ALL ORDER BY ALL", {"day": day}).fetchall())
    return RefineResult(rows[0], rows[1], reasons, kinds, rows[2])


def _append(con: duckdb.DuckDBPyConnection, day: date, rows: list[dict]) -> None:
    if not rows:
        return
    batch = pa.Table.from_pylist(rows, schema=_SCHEMA)
    con.register("batch", batch)
    con.execute("INSERT INTO refined_targets SELECT $day, * FROM batch", {"day": day})
    con.unregister("batch")
    rows.clear()


def completions_shown(con: duckdb.DuckDBPyConnection, day: date) -> int:
    return con.execute(
        "SELECT count(DISTINCT completion_id) FROM raw_sessions WHERE partition_date = $day "
        "AND event = 'completion_shown'", {"day": day}
    ).fetchone()[0]
