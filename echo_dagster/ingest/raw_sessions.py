"""Build one daily partition of `raw_sessions` from the landing zone.

Late events. Clients deliver events up to a day late, into the next day's folder. The rule:

    A session belongs to the first arrival day on which any of its valid events landed.
    Partition D holds the sessions whose events landed in folder D and not in folder D-1, with all
    their events from folders D and D+1.

So partition D reads folder D (everything), folder D+1 (the late events of D's sessions) and the
session ids of folder D-1 (the sessions D must leave to D-1). Folder D's events of sessions that
began on D-1 are *deferred to the previous day* and counted as such. Re-materializing D once
folder D+1 is complete picks up late arrivals; the daily schedule does that (see defs/schedules).

Identities are scoped by tenant (DESIGN.md): an event is (tenant_id, event_id), a session
(tenant_id, session_id), so no event of one tenant can take another's place, join its session or
defer it. Events of opted-out users and tenants are dropped here already, so that no re-run of a
day can bring them back, whatever the landing zone still holds.

Accounting, per partition, checked against the written tables:

    lines read in folder D + late events adopted from D+1
        = events kept + duplicates + quarantined + deferred to the previous day + opted out

Only folder D's own bad lines are quarantined by partition D. Each file is validated into Parquet
files in a spill folder (in worker processes for a big day, see staging.py); DuckDB reads them,
streaming, to decide what the partition keeps and to write it. The warehouse file is locked only
for the final replace-the-partition transaction, which makes re-runs idempotent.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb

from echo_dagster import schema, warehouse
from echo_dagster.events import NULLABLE_FIELDS
from echo_dagster.ingest.reader import KEY_COLUMNS
from echo_dagster.ingest.staging import StagedFile, stage_file
from echo_dagster.landing import LandingFile, LandingStore
from echo_dagster.optout import OptOut
from echo_dagster.workers import DEFAULT_WORKERS, worker_pool

# The event fields that DuckDB reads from the validated line when it writes the partition.
_FROM_JSON = {name: t for name, t in schema.EVENT_COLUMNS if name not in KEY_COLUMNS.names}
# Within a session and a timestamp: the proposal, then the decision, then what the user did.
_EVENT_RANK = (
    "CASE event WHEN 'completion_shown' THEN 0 WHEN 'completion_accepted' THEN 1 "
    "WHEN 'completion_rejected' THEN 1 WHEN 'document_snapshot' THEN 2 ELSE 3 END"
)


@dataclass(frozen=True)
class IngestSettings:
    max_line_bytes: int = 4 * 1024 * 1024
    preview_bytes: int = 1024
    block_bytes: int = 4 * 1024 * 1024
    # Files are validated in this many processes once the three folders reach `parallel_min_bytes`.
    workers: int = DEFAULT_WORKERS
    parallel_min_bytes: int = 32 * 1024 * 1024
    memory_limit: str = "512MB"  # DuckDB's; past it, DuckDB spills to disk
    lock_wait_s: float = 600.0


@dataclass(frozen=True)
class IngestResult:
    day: date
    files: list[str]
    lines_read: int
    late_adopted: int
    kept: int
    duplicates: int
    quarantined: int
    deferred_to_previous: int
    opted_out: int
    stale_events: int
    sessions: int
    quarantine_by_reason: dict[str, int] = field(default_factory=dict)
    events_by_type: dict[str, int] = field(default_factory=dict)
    nulls_by_field: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Input:
    role: str  # "day", "next" (late events of the day's sessions) or "previous" (session ids only)
    file: LandingFile


def ingest_partition(
    store: LandingStore, day: date, warehouse_path: str | Path, settings: IngestSettings = IngestSettings(),
    opt_out: OptOut = OptOut(),
) -> IngestResult:
    # file_no follows arrival order (folder D, then D+1; by name within a folder): the smallest
    # (file_no, line) of an event_id is the copy that arrived first.
    inputs = [_Input(role, f) for role, d in (("day", day), ("next", day + timedelta(days=1)),
                                              ("previous", day - timedelta(days=1))) for f in store.list_day(d)]
    with tempfile.TemporaryDirectory(prefix="echo-ingest-") as spill:
        staged = _stage(store, inputs, Path(spill), settings)
        con = duckdb.connect()
        try:
            con.execute(f"SET memory_limit = '{settings.memory_limit}'")
            con.execute(f"SET temp_directory = '{spill}'")
            _load_stage(con, inputs, staged)
            of_day = [s for s, i in zip(staged, inputs) if i.role == "day"]
            result = _resolve(con, day, opt_out, [i.file.label for i in inputs if i.role == "day"],
                              lines_read=sum(s.lines for s in of_day), valid=sum(s.events for s in of_day))
            nulls = _write(con, day, warehouse_path, result, settings.lock_wait_s)
            return replace(result, nulls_by_field=nulls)
        finally:
            con.close()


def _stage(store: LandingStore, inputs: list[_Input], spill: Path, settings: IngestSettings) -> list[StagedFile]:
    size = sum(i.file.size for i in inputs)
    parallel = settings.workers > 1 and len(inputs) > 1 and size >= settings.parallel_min_bytes
    # Small days stay in this process, where starting workers would cost more than it saves.
    with worker_pool(settings.workers, parallel) as pool:
        futures = [
            pool.submit(stage_file, store, i.file, file_no, spill, block_bytes=settings.block_bytes,
                        max_line_bytes=settings.max_line_bytes, preview_bytes=settings.preview_bytes,
                        sessions_only=i.role == "previous")
            for file_no, i in enumerate(inputs)
        ]
        return [f.result() for f in futures]


def _load_stage(con: duckdb.DuckDBPyConnection, inputs: list[_Input], staged: list[StagedFile]) -> None:
    """Views over the staged Parquet files: stage (events of folders D and D+1), stage_prev (session
    ids of folder D-1), stage_quarantine (folder D's bad lines), and files (file_no → day, name)."""
    con.execute("CREATE TABLE files (file_no INTEGER, arrival_date DATE, source_file VARCHAR)")
    if inputs:
        con.executemany("INSERT INTO files VALUES (?, ?, ?)",
                        [(n, i.file.day, i.file.label) for n, i in enumerate(inputs)])

    def view(name: str, paths: list, empty: str) -> None:
        source = f"read_parquet({[str(p) for p in paths]})" if paths else f"(SELECT {empty} LIMIT 0)"
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {source}")

    roles = [i.role for i in inputs]
    view("stage", [s.events_path for s, r in zip(staged, roles) if r != "previous" and s.events_path],
         "NULL::VARCHAR AS tenant_id, NULL::VARCHAR AS user_id, NULL::VARCHAR AS event_id, "
         "NULL::VARCHAR AS session_id, NULL::VARCHAR AS event, NULL::TIMESTAMP AS ts, "
         "NULL::BIGINT AS seq, NULL::BIGINT AS source_line, NULL::VARCHAR AS line, NULL::INTEGER AS file_no")
    view("stage_prev", [s.events_path for s, r in zip(staged, roles) if r == "previous" and s.events_path],
         "NULL::VARCHAR AS tenant_id, NULL::VARCHAR AS session_id")
    view("stage_quarantine", [s.quarantine_path for s, r in zip(staged, roles) if r == "day" and s.quarantine_path],
         "NULL::INTEGER AS file_no, NULL::BIGINT AS line_no, NULL::VARCHAR AS reason, NULL::VARCHAR AS detail, "
         "NULL::VARCHAR AS raw, NULL::VARCHAR AS raw_encoding")


def _q(name: str) -> str:
    return f'"{name}"'


def _resolve(con: duckdb.DuckDBPyConnection, day: date, opt_out: OptOut, files: list[str], lines_read: int,
             valid: int) -> IngestResult:
    """Decide which staged events the partition keeps and in what order, from the keys alone
    (`valid`: the valid events in folder D)."""
    con.execute(
        """
        CREATE TABLE arrived AS
        WITH owned AS (
            SELECT tenant_id, session_id FROM stage
            WHERE file_no IN (SELECT file_no FROM files WHERE arrival_date = $day)
            EXCEPT SELECT tenant_id, session_id FROM stage_prev
        )
        SELECT s.file_no::BIGINT << 32 | s.source_line AS arrival_order, s.file_no, s.source_line, s.tenant_id,
               s.user_id, s.event_id, s.session_id, s.event, s.ts, s.seq, f.arrival_date,
               list_contains($tenants, s.tenant_id) OR list_contains($users, s.user_id) AS opted_out
        FROM stage s JOIN files f USING (file_no) SEMI JOIN owned USING (tenant_id, session_id)
        """,
        {"day": day, "tenants": sorted(opt_out.tenants), "users": sorted(opt_out.users)},
    )
    con.execute("CREATE VIEW candidates AS SELECT * FROM arrived WHERE NOT opted_out")
    con.execute(
        f"""
        CREATE TABLE keys AS
        SELECT file_no, source_line, tenant_id, session_id, event, ts, arrival_date,
               (row_number() OVER (PARTITION BY tenant_id, session_id
                                   ORDER BY ts, {_EVENT_RANK}, seq NULLS FIRST, event_id))::INTEGER AS session_seq
        FROM candidates
        WHERE arrival_order IN (SELECT min(arrival_order) FROM candidates GROUP BY tenant_id, event_id)
        """
    )
    kept, sessions, stale = con.execute(
        "SELECT count(*), count(DISTINCT (tenant_id, session_id)), "
        "count(*) FILTER (WHERE ts < arrival_date - INTERVAL 1 DAY) FROM keys"
    ).fetchone()
    candidates, on_time, opted_out = con.execute(
        "SELECT count(*) FILTER (WHERE NOT opted_out), count(*) FILTER (WHERE arrival_date = $day), "
        "count(*) FILTER (WHERE opted_out) FROM arrived", {"day": day}
    ).fetchone()
    quarantine_by_reason = dict(
        con.execute("SELECT reason, count(*) FROM stage_quarantine GROUP BY ALL ORDER BY ALL").fetchall())
    return IngestResult(
        day=day,
        files=files,
        lines_read=lines_read,
        late_adopted=candidates + opted_out - on_time,
        kept=kept,
        duplicates=candidates - kept,
        quarantined=sum(quarantine_by_reason.values()),
        deferred_to_previous=valid - on_time,
        opted_out=opted_out,
        stale_events=stale,
        sessions=sessions,
        quarantine_by_reason=quarantine_by_reason,
        events_by_type=dict(con.execute("SELECT event, count(*) FROM keys GROUP BY ALL ORDER BY ALL").fetchall()),
    )


def _write(con: duckdb.DuckDBPyConnection, day: date, warehouse_path, result: IngestResult, wait_s: float) -> dict:
    """Replace the partition in the warehouse in one transaction; returns null counts per nullable field."""
    columns = ", ".join(f"j.{_q(n)}" if n in _FROM_JSON else f"s.{_q(n)}" for n, _ in schema.EVENT_COLUMNS)
    spec = json.dumps(_FROM_JSON)
    with warehouse.attached(con, warehouse_path, "wh", wait_s=wait_s, window=(day, day)):
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("DELETE FROM wh.raw_sessions WHERE partition_date = $day", {"day": day})
            con.execute(
                f"""
                INSERT INTO wh.raw_sessions
                SELECT $day, s.session_seq, {columns}, s.arrival_date, f.source_file, s.source_line
                FROM (SELECT k.session_seq, k.arrival_date, s.*, from_json(s.line, '{spec}') AS j
                      FROM keys k JOIN stage s USING (file_no, source_line)) s
                JOIN files f USING (file_no)
                """,
                {"day": day},
            )
            con.execute("DELETE FROM wh.quarantine WHERE partition_date = $day", {"day": day})
            con.execute(
                """
                INSERT INTO wh.quarantine
                SELECT $day, f.source_file, q.line_no, q.reason, q.detail, q.raw, q.raw_encoding
                FROM stage_quarantine q JOIN files f USING (file_no) ORDER BY f.source_file, q.line_no
                """,
                {"day": day},
            )
            con.execute("DELETE FROM wh.ingest_log WHERE partition_date = $day", {"day": day})
            con.execute(
                "INSERT INTO wh.ingest_log BY NAME SELECT $day AS partition_date, $files AS files, "
                "$lines_read AS lines_read, $late_adopted AS late_adopted, $kept AS kept, $duplicates AS duplicates, "
                "$quarantined AS quarantined, $deferred AS deferred_to_previous, $opted_out AS opted_out, "
                "$now AS materialized_at",
                {
                    "day": day, "files": len(result.files), "lines_read": result.lines_read,
                    "late_adopted": result.late_adopted, "kept": result.kept, "duplicates": result.duplicates,
                    "quarantined": result.quarantined, "deferred": result.deferred_to_previous,
                    "opted_out": result.opted_out, "now": datetime.now(timezone.utc).replace(tzinfo=None),
                },
            )
            nulls = _null_counts(con, day)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return nulls


# A null only counts on the event type that carries the field.
_CARRIERS = {"model": "completion_shown", "cursor": "completion_shown", "latency_ms": "completion_shown",
             "reason": "completion_rejected"}


def _null_counts(con: duckdb.DuckDBPyConnection, day: date) -> dict[str, int]:
    counts = ", ".join(
        f"count(*) FILTER (WHERE {_q(name)} IS NULL"
        + (f" AND event = '{_CARRIERS[name]}')" if name in _CARRIERS else ")")
        for name in NULLABLE_FIELDS
    )
    row = con.execute(f"SELECT {counts} FROM wh.raw_sessions WHERE partition_date = $day", {"day": day}).fetchone()
    return dict(zip(NULLABLE_FIELDS, row))


@dataclass(frozen=True)
class AccountingCheck:
    passed: bool
    description: str
    figures: dict[str, int]


def check_accounting(con: duckdb.DuckDBPyConnection, day: date) -> AccountingCheck:
    """Recount what the warehouse holds for a partition against the lines its ingestion read."""
    log = con.execute(
        "SELECT lines_read, late_adopted, duplicates, deferred_to_previous, coalesce(opted_out, 0) FROM ingest_log "
        "WHERE partition_date = $d", {"d": day},
    ).fetchone()
    if log is None:
        return AccountingCheck(False, f"no ingestion record for {day}: materialize raw_sessions for it", {})
    lines_read, late_adopted, duplicates, deferred, opted_out = log
    kept = con.execute("SELECT count(*) FROM raw_sessions WHERE partition_date = $d", {"d": day}).fetchone()[0]
    quarantined = con.execute("SELECT count(*) FROM quarantine WHERE partition_date = $d", {"d": day}).fetchone()[0]
    figures = {
        "lines_read": lines_read, "late_adopted": late_adopted, "kept": kept, "duplicates": duplicates,
        "quarantined": quarantined, "deferred_to_previous": deferred, "opted_out": opted_out,
    }
    accounted = kept + duplicates + quarantined + deferred + opted_out
    passed = lines_read + late_adopted == accounted
    description = (
        f"{lines_read} lines read + {late_adopted} late events adopted = {kept} kept + {duplicates} duplicates"
        f" + {quarantined} quarantined + {deferred} deferred to the previous day + {opted_out} opted out"
    )
    if not passed:
        description = f"MISMATCH by {lines_read + late_adopted - accounted}: " + description.replace(" = ", " != ")
    return AccountingCheck(passed, description, figures)
