"""raw_sessions' domain logic against a real DuckDB file and real landing files."""

import contextlib
import json
import multiprocessing
import time
from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest

from echo_dagster import warehouse
from echo_dagster.ingest.raw_sessions import IngestSettings, check_accounting, ingest_partition
from echo_dagster.landing import LocalLandingStore
from echo_dagster.landing_fixtures import FixtureSpec, write_landing_fixtures
from echo_dagster_tests.test_events import COMMON

DAYS = (date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3))
SETTINGS = IngestSettings(max_line_bytes=20_000)


@pytest.fixture
def landing(tmp_path):
    return LocalLandingStore(tmp_path / "landing")


def rows(db, sql, **params):
    with warehouse.connect(db, read_only=True) as con:
        return con.execute(sql, params).fetchall()


def test_each_partition_finds_exactly_what_the_generator_planted(landing, tmp_path):
    spec = FixtureSpec(days=DAYS, sessions_per_day=12, truncated_gzip_per_day=1, unsupported_files_per_day=1,
                       long_line_bytes=30_000, late_share=0.15, duplicate_share=0.1)
    expected = write_landing_fixtures(landing, spec)
    db = tmp_path / "wh.duckdb"
    for day in DAYS + (DAYS[-1] + timedelta(days=1),):
        result = ingest_partition(landing, day, db, SETTINGS)
        exp = expected[day]
        assert (result.kept, result.duplicates, result.late_adopted, result.deferred_to_previous, result.lines_read) \
            == (exp.kept, exp.duplicates, exp.late_adopted, exp.deferred_to_previous, exp.lines), day
        assert result.quarantine_by_reason == dict(exp.quarantine)
        stored = {s for (s,) in rows(db, "SELECT DISTINCT session_id FROM raw_sessions WHERE partition_date = $d", d=day)}
        assert stored == exp.sessions
        with warehouse.connect(db, read_only=True) as con:
            assert check_accounting(con, day).passed
    assert DAYS[0] in expected and sum(e.late_adopted for e in expected.values()) > 0  # the test tests something


def test_rematerializing_a_partition_replaces_it_with_the_same_rows(landing, tmp_path):
    write_landing_fixtures(landing, FixtureSpec(days=DAYS, sessions_per_day=8, long_line_bytes=30_000))
    db = tmp_path / "wh.duckdb"
    snapshot = "SELECT * EXCLUDE (partition_date) FROM {} WHERE partition_date = '2026-11-02' ORDER BY ALL"
    ingest_partition(landing, DAYS[1], db, SETTINGS)
    first = rows(db, snapshot.format("raw_sessions")), rows(db, snapshot.format("quarantine"))
    ingest_partition(landing, DAYS[0], db, SETTINGS)
    ingest_partition(landing, DAYS[1], db, SETTINGS)
    second = rows(db, snapshot.format("raw_sessions")), rows(db, snapshot.format("quarantine"))
    assert first == second and len(first[0]) > 0 and len(first[1]) > 0
    assert rows(db, "SELECT count(*) FROM ingest_log") == [(2,)]


def event(event_id, session, ts, kind="document_closed", **extra):
    return json.dumps({**COMMON, "event": kind, "event_id": event_id, "session_id": session, "ts": ts, **extra})


def test_late_events_stay_with_the_session_they_belong_to(landing, tmp_path):
    """Session A starts at 23:55 on the 1st and crosses midnight: its later events land in the 2nd's folder
    (one of them twice). Session B starts on the 2nd. A belongs to the 1st, B to the 2nd."""
    snap = dict(kind="document_snapshot", document="x = 1\n", trigger="interval")
    landing.write("2026-11-01/a.jsonl", (event("a1", "A", "2026-11-01T23:55:00Z", **snap, seq=0) + "\n").encode())
    landing.write("2026-11-02/b.jsonl", "\n".join([
        event("a2", "A", "2026-11-02T00:01:00Z", **snap, seq=1),
        event("a3", "A", "2026-11-02T00:02:00Z"),
        event("a2", "A", "2026-11-02T00:01:00Z", **snap, seq=1),  # delivered twice
        event("b1", "B", "2026-11-02T09:00:00Z"),
    ]).encode())
    db = tmp_path / "wh.duckdb"
    first = ingest_partition(landing, date(2026, 11, 1), db, SETTINGS)
    second = ingest_partition(landing, date(2026, 11, 2), db, SETTINGS)
    got = rows(db, "SELECT partition_date, session_id, session_seq, event_id, arrival_date, source_line "
                   "FROM raw_sessions ORDER BY ALL")
    assert got == [
        (date(2026, 11, 1), "A", 1, "a1", date(2026, 11, 1), 1),
        (date(2026, 11, 1), "A", 2, "a2", date(2026, 11, 2), 1),  # the first copy is kept
        (date(2026, 11, 1), "A", 3, "a3", date(2026, 11, 2), 2),
        (date(2026, 11, 2), "B", 1, "b1", date(2026, 11, 2), 4),
    ]
    assert (first.late_adopted, first.duplicates, first.kept) == (3, 1, 3)
    assert (second.lines_read, second.deferred_to_previous, second.kept) == (4, 3, 1)


def test_events_are_ordered_within_a_session_by_time_then_lifecycle(landing, tmp_path):
    ts = "2026-11-01T10:00:00Z"
    lines = [
        event("e3", "S", ts, kind="document_snapshot", document="", trigger="save", seq=0),
        event("e2", "S", ts, kind="completion_accepted", completion_id="c", accepted_text="x"),
        event("e4", "S", "2026-11-01T09:59:59Z"),
        event("e1", "S", ts, kind="completion_shown", completion_id="c", model=None, cursor=0, prefix="",
              suffix="", proposal="x", latency_ms=None),
    ]
    landing.write("2026-11-01/s.jsonl", "\n".join(lines).encode())
    ingest_partition(landing, date(2026, 11, 1), tmp_path / "wh.duckdb", SETTINGS)
    got = rows(tmp_path / "wh.duckdb", "SELECT event_id, ts FROM raw_sessions ORDER BY session_seq")
    assert [e for e, _ in got] == ["e4", "e1", "e2", "e3"]
    assert got[1][1] == datetime(2026, 11, 1, 10, 0)  # stored as naive UTC


def test_an_empty_day_is_a_valid_empty_partition(landing, tmp_path):
    result = ingest_partition(landing, date(2026, 11, 1), tmp_path / "wh.duckdb", SETTINGS)
    assert (result.lines_read, result.kept, result.files) == (0, 0, [])
    with warehouse.connect(tmp_path / "wh.duckdb", read_only=True) as con:
        assert check_accounting(con, date(2026, 11, 1)).passed


def test_the_accounting_check_fails_when_the_tables_lose_a_row(landing, tmp_path):
    write_landing_fixtures(landing, FixtureSpec(days=DAYS[:1], long_line_bytes=30_000))
    db = tmp_path / "wh.duckdb"
    ingest_partition(landing, DAYS[0], db, SETTINGS)
    with warehouse.connect(db) as con:
        con.execute("DELETE FROM raw_sessions WHERE event_id IN (SELECT event_id FROM raw_sessions LIMIT 1)")
        check = check_accounting(con, DAYS[0])
    assert not check.passed and check.description.startswith("MISMATCH by 1")


def test_validation_in_worker_processes_gives_the_same_partition_as_inline(landing, tmp_path):
    write_landing_fixtures(landing, FixtureSpec(days=DAYS, sessions_per_day=10, truncated_gzip_per_day=1,
                                                long_line_bytes=30_000))
    inline = ingest_partition(landing, DAYS[1], tmp_path / "a.duckdb", SETTINGS)
    pooled = ingest_partition(landing, DAYS[1], tmp_path / "b.duckdb",
                              replace(SETTINGS, workers=2, parallel_min_bytes=0, block_bytes=2048))
    assert pooled == inline
    query = "SELECT * EXCLUDE (partition_date) FROM {} ORDER BY ALL"
    for table in ("raw_sessions", "quarantine"):
        assert rows(tmp_path / "a.duckdb", query.format(table)) == rows(tmp_path / "b.duckdb", query.format(table))


def _hold_warehouse(path: str, seconds: float, ready) -> None:
    import time

    import duckdb

    con = duckdb.connect(path)
    ready.set()
    time.sleep(seconds)
    con.close()


@contextlib.contextmanager
def another_process_holding(db, seconds: float):
    """A real second process holds the warehouse file's lock for a while."""
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_warehouse, args=(str(db), seconds, ready))
    holder.start()
    assert ready.wait(30)
    try:
        yield
    finally:
        holder.join()


def test_a_partition_waits_while_another_process_holds_the_warehouse(landing, tmp_path):
    write_landing_fixtures(landing, FixtureSpec(days=DAYS[:1], long_line_bytes=30_000))
    db = tmp_path / "wh.duckdb"
    with another_process_holding(db, 2.0):
        start = time.monotonic()
        result = ingest_partition(landing, DAYS[0], db, SETTINGS)
        assert result.kept > 0 and time.monotonic() - start >= 1.0
    with warehouse.connect(db, read_only=True) as con:
        assert check_accounting(con, DAYS[0]).passed


def test_a_warehouse_held_past_the_deadline_is_a_clear_error(landing, tmp_path):
    write_landing_fixtures(landing, FixtureSpec(days=DAYS[:1], long_line_bytes=30_000))
    db = tmp_path / "wh.duckdb"
    with another_process_holding(db, 3.0), pytest.raises(warehouse.WarehouseBusy, match="stayed locked by another"):
        ingest_partition(landing, DAYS[0], db, replace(SETTINGS, lock_wait_s=0.5))
