"""Hostile input in the landing zone: poison lines and entries, another tenant's forged ids, and the
users who opted out. Each case failed a partition or leaked across tenants before (issue 13)."""

import json
import os
from datetime import date, timedelta

from echo_dagster import warehouse
from echo_dagster.ingest.raw_sessions import IngestSettings, check_accounting, ingest_partition
from echo_dagster.landing import LocalLandingStore
from echo_dagster.optout import OptOut
from echo_dagster_tests.test_events import COMMON, VALID, CompletionShown

DAY = date(2026, 11, 2)
SETTINGS = IngestSettings(max_line_bytes=20_000)


def event(**fields) -> bytes:
    return json.dumps({**COMMON, **VALID[CompletionShown], **fields}, ensure_ascii=False).encode()


def rows(db, sql, **params):
    with warehouse.connect(db, read_only=True) as con:
        return con.execute(sql, params).fetchall()


def test_a_poison_line_in_any_folder_a_partition_reads_is_quarantined_not_fatal(tmp_path):
    store = LocalLandingStore(tmp_path / "landing")
    poison = b"[" * 994 + b"]" * 994  # raised RecursionError in the decoder: three days of harvest failed
    for offset in (-1, 0, 1):
        day = DAY + timedelta(days=offset)
        store.write(f"{day}/ide.jsonl", event(event_id=f"e{offset}", session_id=f"s{offset}") + b"\n" + poison + b"\n")
    db = tmp_path / "wh.duckdb"
    for offset in (-1, 0, 1):
        result = ingest_partition(store, DAY + timedelta(days=offset), db, SETTINGS)
        assert result.quarantine_by_reason == {"nested_too_deep": 1} and result.kept == 1
    with warehouse.connect(db, read_only=True) as con:
        assert check_accounting(con, DAY).passed


def test_entries_that_must_not_be_read_are_counted_and_quarantined_with_their_reason(tmp_path):
    root = tmp_path / "landing"
    store = LocalLandingStore(root)
    store.write(f"{DAY}/good.jsonl", event() + b"\n")
    folder = root / DAY.isoformat()
    os.mkfifo(folder / "pipe.jsonl")  # opening it would block the partition for ever
    secret = tmp_path / "outside.jsonl"
    secret.write_bytes(event(event_id="not-ours") + b"\n")
    os.symlink(secret, folder / "escape.jsonl")
    os.symlink(folder / "good.jsonl", folder / "alias.jsonl")  # a link that stays inside is read
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.jsonl"), "wb") as f:  # DuckDB could not store the name
        f.write(event(event_id="latin1") + b"\n")
    db = tmp_path / "wh.duckdb"
    result = ingest_partition(store, DAY, db, SETTINGS)
    assert result.quarantine_by_reason == {"not_a_regular_file": 1, "link_outside_landing": 1,
                                           "file_name_not_utf8": 1}
    assert result.kept == 1 and result.duplicates == 1  # alias.jsonl is the same event again
    assert ("not-ours",) not in rows(db, "SELECT event_id FROM raw_sessions")
    stored = {name for (name,) in rows(db, "SELECT source_file FROM quarantine")}
    assert f"{DAY}/caf\\xe9.jsonl" in stored and f"{DAY}/escape.jsonl" in stored
    with warehouse.connect(db, read_only=True) as con:
        assert check_accounting(con, DAY).passed


def test_another_tenant_cannot_take_over_a_sessions_ids(tmp_path):
    """Tenant C forges tenant A's next event id and A's session id, and posts first; then A's
    events arrive. A's session stays A's alone, and C's text is no part of it."""
    store = LocalLandingStore(tmp_path / "landing")
    closing = {"event": "document_closed", "event_id": "a-3", "session_id": "s-a", "tenant_id": "tenant-c",
               "ts": "2026-11-02T10:00:03.000Z"}
    forged_snapshot = {"event": "document_snapshot", "event_id": "a-9", "session_id": "s-a", "tenant_id": "tenant-c",
                       "document": "stolen = 'from C'\n", "trigger": "close", "seq": 9, "ts": "2026-11-02T10:00:02.000Z"}
    attack = [json.dumps({**COMMON, **e}).encode() for e in (closing, forged_snapshot)]
    own = [event(event_id="a-1", session_id="s-a", tenant_id="tenant-a", ts="2026-11-02T10:00:00.000Z"),
           json.dumps({**COMMON, "event": "document_closed", "event_id": "a-3", "session_id": "s-a",
                       "tenant_id": "tenant-a", "ts": "2026-11-02T10:00:05.000Z"}).encode()]
    store.write(f"{DAY}/0-attack.jsonl", b"\n".join(attack) + b"\n")  # arrives first
    store.write(f"{DAY}/1-own.jsonl", b"\n".join(own) + b"\n")
    db = tmp_path / "wh.duckdb"
    result = ingest_partition(store, DAY, db, SETTINGS)
    assert result.duplicates == 0 and result.kept == 4 and result.sessions == 2
    a = rows(db, "SELECT event_id, event, session_seq FROM raw_sessions WHERE tenant_id = 'tenant-a' ORDER BY 3")
    assert a == [("a-1", "completion_shown", 1), ("a-3", "document_closed", 2)]
    # The previous day's sessions are the tenant's too: C's session id on D-1 does not defer A's.
    store.write(f"{DAY - timedelta(days=1)}/c.jsonl",
                json.dumps({**COMMON, **closing, "event_id": "c-0", "ts": "2026-11-01T09:00:00.000Z"}).encode() + b"\n")
    again = ingest_partition(store, DAY, db, SETTINGS)
    assert again.deferred_to_previous == 2 and again.kept == 2  # C's events on D join C's session of D-1
    assert rows(db, "SELECT count(*) FROM raw_sessions WHERE tenant_id = 'tenant-a'") == [(2,)]


def test_opted_out_users_and_tenants_are_dropped_at_ingest_whatever_the_landing_zone_holds(tmp_path):
    store = LocalLandingStore(tmp_path / "landing")
    lines = [event(event_id="1", user_id="zoë"), event(event_id="2", user_id="jane doe"),
             event(event_id="3", tenant_id="gone-corp"), event(event_id="4", user_id="stays")]
    escaped = event(event_id="5").replace(b'"user_id": "u1"', b'"user_id": "\\u007a\\u006f\\u00eb"')
    store.write(f"{DAY}/ide.jsonl", b"\n".join(lines + [escaped]) + b"\n")
    db = tmp_path / "wh.duckdb"
    listed = OptOut(users=frozenset({"zoë", "jane doe"}), tenants=frozenset({"gone-corp"}))
    result = ingest_partition(store, DAY, db, SETTINGS, listed)
    assert result.opted_out == 4 and result.kept == 1
    assert rows(db, "SELECT event_id FROM raw_sessions") == [("4",)]
    with warehouse.connect(db, read_only=True) as con:
        check = check_accounting(con, DAY)
        assert check.passed and check.figures["opted_out"] == 4
