"""Build one daily partition of `raw_sessions` from the landing zone.

Late events. Clients deliver events up to a day late, into the next day's folder. The rule:

    A session belongs to the first arrival day on which any of its valid events landed.
    Partition D holds the sessions whose events landed in folder D and not in folder D-1, with all
    their events from folders D and D+1.

So partition D reads folder D (everything), folder D+1 (the late events of D's sessions) and the
session ids of folder D-1 (the sessions D must leave to D-1). Folder D's events of sessions that
began on D-1 are *deferred to the previous day* and counted as such. Re-materializing D once
folder D+1 is complete picks up late arrivals; the daily schedule does that (see defs/schedules).

Accounting, per partition, checked against the written tables:

    lines read in folder D + late events adopted from D+1
        = events kept + duplicates + quarantined + deferred to the previous day

Only folder D's own bad lines are quarantined by partition D. All staging happens in a private
in-memory DuckDB (spilling to disk past its memory limit); the warehouse file is locked only for
the final replace-the-partition transaction, which makes re-runs idempotent.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from echo_dagster import warehouse
from echo_dagster.events import NULLABLE_FIELDS
from echo_dagster.ingest.reader import Quarantined, preview_text, read_records
from echo_dagster.landing import LandingFile, LandingStore

_ARROW_TYPES = {
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),  # aware datetimes in, UTC instants stored
}
_STAGE_COLUMNS = warehouse.EVENT_COLUMNS + warehouse.PROVENANCE_COLUMNS
_EVENT_NAMES = tuple(name for name, _ in warehouse.EVENT_COLUMNS)
# Within a session and a timestamp: the proposal, then the decision, then what the user did.
_EVENT_RANK = (
    "CASE event WHEN 'completion_shown' THEN 0 WHEN 'completion_accepted' THEN 1 "
    "WHEN 'completion_rejected' THEN 1 WHEN 'document_snapshot' THEN 2 ELSE 3 END"
)


@dataclass(frozen=True)
class IngestSettings:
    max_line_bytes: int = 4 * 1024 * 1024
    preview_bytes: int = 1024
    batch_rows: int = 10_000
    memory_limit: str = "1GB"
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
    stale_events: int
    sessions: int
    quarantine_by_reason: dict[str, int] = field(default_factory=dict)
    events_by_type: dict[str, int] = field(default_factory=dict)
    nulls_by_field: dict[str, int] = field(default_factory=dict)


def ingest_partition(
    store: LandingStore, day: date, warehouse_path: str | Path, settings: IngestSettings = IngestSettings()
) -> IngestResult:
    with tempfile.TemporaryDirectory(prefix="echo-ingest-") as spill:
        con = duckdb.connect()
        try:
            con.execute(f"SET memory_limit = '{settings.memory_limit}'")
            con.execute(f"SET temp_directory = '{spill}'")
            con.execute("SET TimeZone = 'UTC'")
            stager = _Stager(con, settings.batch_rows)
            files, lines_read = _stage_day(store, day, stager, settings)
            _stage_next_day(store, day + timedelta(days=1), stager, settings)
            _stage_previous_sessions(store, day - timedelta(days=1), stager, settings)
            stager.flush()
            result = _resolve(con, day, files, lines_read)
            _write(con, day, warehouse_path, result, settings.lock_wait_s)
            return result
        finally:
            con.close()


class _Stager:
    """Buffers rows column-wise and appends them to the staging tables in Arrow batches."""

    def __init__(self, con: duckdb.DuckDBPyConnection, batch_rows: int):
        self.con = con
        self.batch_rows = batch_rows
        con.execute(f"CREATE TABLE stage ({', '.join(f'{_q(n)} {t}' for n, t in _STAGE_COLUMNS)})")
        con.execute("CREATE TABLE stage_prev (session_id VARCHAR)")
        con.execute(
            "CREATE TABLE stage_quarantine (source_file VARCHAR, line_no BIGINT, reason VARCHAR, "
            "detail VARCHAR, raw VARCHAR, raw_encoding VARCHAR)"
        )
        self.schemas = {
            "stage": pa.schema([(n, _ARROW_TYPES[t]) for n, t in _STAGE_COLUMNS]),
            "stage_prev": pa.schema([("session_id", pa.string())]),
            "stage_quarantine": pa.schema(
                [(n, pa.int64() if n == "line_no" else pa.string())
                 for n in ("source_file", "line_no", "reason", "detail", "raw", "raw_encoding")]
            ),
        }
        self.buffers = {name: [[] for _ in schema] for name, schema in self.schemas.items()}

    def add_event(self, event, arrival: date, source_file: str, line_no: int) -> None:
        columns = self.buffers["stage"]
        for column, name in zip(columns, _EVENT_NAMES):
            column.append(getattr(event, name, None))
        columns[-3].append(arrival)
        columns[-2].append(source_file)
        columns[-1].append(line_no)
        if len(columns[0]) >= self.batch_rows:
            self._flush("stage")

    def add_previous_session(self, session_id: str) -> None:
        column = self.buffers["stage_prev"][0]
        column.append(session_id)
        if len(column) >= self.batch_rows:
            self._flush("stage_prev")

    def add_quarantined(self, source_file: str, record: Quarantined) -> None:
        raw, encoding = preview_text(record.raw)
        values = (source_file, record.line_no, record.reason, record.detail, raw, encoding)
        for column, value in zip(self.buffers["stage_quarantine"], values):
            column.append(value)
        if len(self.buffers["stage_quarantine"][0]) >= self.batch_rows:
            self._flush("stage_quarantine")

    def flush(self) -> None:
        for name in self.buffers:
            self._flush(name)

    def _flush(self, name: str) -> None:
        columns = self.buffers[name]
        if not columns[0]:
            return
        schema = self.schemas[name]
        batch = pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, schema)], schema=schema)
        self.con.register("batch", batch)
        self.con.execute(f"INSERT INTO {name} SELECT * FROM batch")
        self.con.unregister("batch")
        for column in columns:
            column.clear()


def _scan(
    store: LandingStore,
    day: date,
    settings: IngestSettings,
    on_event: Callable[[object, LandingFile, int], None],
    on_quarantined: Callable[[LandingFile, Quarantined], None],
) -> tuple[list[str], int]:
    """Read every file of a day's folder; returns (file names, lines read)."""
    names, lines = [], 0
    for file in store.list_day(day):
        names.append(file.name)
        if not file.holds_events:
            lines += 1
            on_quarantined(file, Quarantined(0, "unsupported_file", f"not a .jsonl or .jsonl.gz file ({file.size} bytes)", b""))
            continue
        with store.open(file) as stream:
            for line_no, record in read_records(
                stream, compressed=file.compressed, max_line_bytes=settings.max_line_bytes,
                preview_bytes=settings.preview_bytes,
            ):
                lines += 1
                if isinstance(record, Quarantined):
                    on_quarantined(file, record)
                else:
                    on_event(record, file, line_no)
    return names, lines


def _ignore(*_args) -> None:
    pass


def _stage_day(store, day, stager: _Stager, settings) -> tuple[list[str], int]:
    return _scan(
        store, day, settings,
        lambda event, file, line_no: stager.add_event(event, day, file.name, line_no),
        lambda file, record: stager.add_quarantined(file.name, record),
    )


def _stage_next_day(store, day, stager: _Stager, settings) -> None:
    # Its bad lines are the next partition's to quarantine.
    _scan(store, day, settings, lambda event, file, line_no: stager.add_event(event, day, file.name, line_no), _ignore)


def _stage_previous_sessions(store, day, stager: _Stager, settings) -> None:
    _scan(store, day, settings, lambda event, file, line_no: stager.add_previous_session(event.session_id), _ignore)


def _q(name: str) -> str:
    return f'"{name}"'


def _resolve(con: duckdb.DuckDBPyConnection, day: date, files: list[str], lines_read: int) -> IngestResult:
    next_day = day + timedelta(days=1)
    cols = ", ".join(_q(n) for n, _ in _STAGE_COLUMNS)
    con.execute(
        """
        CREATE TABLE owned AS
        SELECT DISTINCT session_id FROM stage
        WHERE arrival_date = $day AND session_id NOT IN (SELECT session_id FROM stage_prev)
        """,
        {"day": day},
    )
    con.execute("CREATE TABLE candidates AS SELECT * FROM stage SEMI JOIN owned USING (session_id)")
    con.execute(
        f"""
        CREATE TABLE final AS
        SELECT $day::DATE AS partition_date,
               (row_number() OVER (PARTITION BY session_id
                                   ORDER BY ts, {_EVENT_RANK}, seq NULLS FIRST, event_id))::INTEGER AS session_seq,
               {cols}
        FROM (
            SELECT *, row_number() OVER (PARTITION BY event_id
                                         ORDER BY arrival_date, source_file, source_line) AS copy_no
            FROM candidates
        )
        WHERE copy_no = 1
        """,
        {"day": day},
    )

    def scalar(sql: str, **params) -> int:
        return con.execute(sql, params).fetchone()[0]

    kept = scalar("SELECT count(*) FROM final")
    candidates = scalar("SELECT count(*) FROM candidates")
    carriers = {  # a null only counts on the event type that carries the field
        "model": "completion_shown", "cursor": "completion_shown", "latency_ms": "completion_shown",
        "reason": "completion_rejected",
    }
    nulls = {}
    for name in NULLABLE_FIELDS:
        where = f"WHERE event = '{carriers[name]}'" if name in carriers else ""
        nulls[name] = scalar(f"SELECT count(*) FILTER (WHERE {_q(name)} IS NULL) FROM final {where}")
    return IngestResult(
        day=day,
        files=files,
        lines_read=lines_read,
        late_adopted=scalar("SELECT count(*) FROM candidates WHERE arrival_date = $d", d=next_day),
        kept=kept,
        duplicates=candidates - kept,
        quarantined=scalar("SELECT count(*) FROM stage_quarantine"),
        deferred_to_previous=scalar("SELECT count(*) FROM stage WHERE arrival_date = $d", d=day)
        - scalar("SELECT count(*) FROM candidates WHERE arrival_date = $d", d=day),
        stale_events=scalar("SELECT count(*) FROM final WHERE ts < arrival_date - INTERVAL 1 DAY"),
        sessions=scalar("SELECT count(DISTINCT session_id) FROM final"),
        quarantine_by_reason=dict(
            con.execute("SELECT reason, count(*) FROM stage_quarantine GROUP BY ALL ORDER BY ALL").fetchall()
        ),
        events_by_type=dict(con.execute("SELECT event, count(*) FROM final GROUP BY ALL ORDER BY ALL").fetchall()),
        nulls_by_field=nulls,
    )


def _write(con: duckdb.DuckDBPyConnection, day: date, warehouse_path, result: IngestResult, wait_s: float) -> None:
    with warehouse.attached(con, warehouse_path, "wh", wait_s=wait_s):
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("DELETE FROM wh.raw_sessions WHERE partition_date = $day", {"day": day})
            con.execute("INSERT INTO wh.raw_sessions SELECT * FROM final ORDER BY session_id, session_seq")
            con.execute("DELETE FROM wh.quarantine WHERE partition_date = $day", {"day": day})
            con.execute(
                "INSERT INTO wh.quarantine SELECT $day, * FROM stage_quarantine ORDER BY source_file, line_no",
                {"day": day},
            )
            con.execute("DELETE FROM wh.ingest_log WHERE partition_date = $day", {"day": day})
            con.execute(
                "INSERT INTO wh.ingest_log VALUES ($day, $files, $lines_read, $late_adopted, $kept, $duplicates, "
                "$quarantined, $deferred, $now)",
                {
                    "day": day, "files": len(result.files), "lines_read": result.lines_read,
                    "late_adopted": result.late_adopted, "kept": result.kept, "duplicates": result.duplicates,
                    "quarantined": result.quarantined, "deferred": result.deferred_to_previous,
                    "now": datetime.now(timezone.utc).replace(tzinfo=None),
                },
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


@dataclass(frozen=True)
class AccountingCheck:
    passed: bool
    description: str
    figures: dict[str, int]


def check_accounting(con: duckdb.DuckDBPyConnection, day: date) -> AccountingCheck:
    """Recount what the warehouse holds for a partition against the lines its ingestion read."""
    log = con.execute(
        "SELECT lines_read, late_adopted, duplicates, deferred_to_previous FROM ingest_log WHERE partition_date = $d",
        {"d": day},
    ).fetchone()
    if log is None:
        return AccountingCheck(False, f"no ingestion record for {day}: materialize raw_sessions for it", {})
    lines_read, late_adopted, duplicates, deferred = log
    kept = con.execute("SELECT count(*) FROM raw_sessions WHERE partition_date = $d", {"d": day}).fetchone()[0]
    quarantined = con.execute("SELECT count(*) FROM quarantine WHERE partition_date = $d", {"d": day}).fetchone()[0]
    figures = {
        "lines_read": lines_read, "late_adopted": late_adopted, "kept": kept, "duplicates": duplicates,
        "quarantined": quarantined, "deferred_to_previous": deferred,
    }
    accounted = kept + duplicates + quarantined + deferred
    passed = lines_read + late_adopted == accounted
    description = (
        f"{lines_read} lines read + {late_adopted} late events adopted = {kept} kept + {duplicates} duplicates"
        f" + {quarantined} quarantined + {deferred} deferred to the previous day"
    )
    if not passed:
        description = f"MISMATCH by {lines_read + late_adopted - accounted}: " + description.replace(" = ", " != ")
    return AccountingCheck(passed, description, figures)
