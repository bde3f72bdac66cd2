"""Opt-out that holds: a user written in non-ASCII, a user whose id a client escaped, a whole
tenant, and events still in an open capture segment are purged from the landing zone and every
table, and no re-materialization of any affected day brings them back (issue 13). Before, the
purge matched `json.dumps(id)` against the raw bytes, missed all four, and audited success."""

import gzip
import json
from datetime import date, datetime, timezone

import dagster as dg
from dagster_aws.s3 import S3Resource

from echo_dagster import warehouse
from echo_dagster.defs.filtered_dataset_asset import filtered_dataset
from echo_dagster.defs.raw_sessions_asset import raw_sessions
from echo_dagster.defs.refined_targets_asset import refined_targets
from echo_dagster.defs.resources import LandingZone, ModelRegistry, OptOutList, Warehouse
from echo_dagster.defs.retention import opt_out_purge_job
from echo_dagster.landing import LocalLandingStore
from echo_dagster.simulate.run import SimulationSpec, simulate
from echo_dagster.simulate.users import make_personas
from echo_dagster_tests.test_simulate import SOURCE, half_right

DAYS = (date(2026, 11, 2), date(2026, 11, 3))
SUBJECTS = {"user_id": ["zoë", "alice"], "tenant_id": ["evil-corp"]}
TABLES = ("raw_sessions", "refined_targets", "filtered_dataset")


def _copy(lines: list[bytes], tag: str, escaped: bool = False, **fields) -> bytes:
    """The events again under other ids, as another user or tenant; `escaped`: ids \\u-escaped, as
    a client may write them."""
    out = []
    for line in lines:
        e = json.loads(line)
        e.update(event_id=f"{tag}-{e['event_id']}", session_id=f"{tag}-{e['session_id']}", **fields)
        if "completion_id" in e:
            e["completion_id"] = f"{tag}-{e['completion_id']}"
        text = json.dumps(e, ensure_ascii=False)
        if escaped:
            for value in fields.values():
                text = text.replace(json.dumps(value), '"' + "".join(f"\\u{ord(c):04x}" for c in value) + '"')
        out.append(text.encode())
    return b"\n".join(out) + b"\n"


def _landed(root) -> list[dict]:
    events = []
    for path in sorted(root.rglob("*.jsonl*")):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        events += [json.loads(line) for line in data.splitlines() if line.strip()]
    return events


def _subjects_in(db) -> dict[str, int]:
    with warehouse.connect(db, read_only=True) as con:
        return {table: con.execute(f"SELECT count(*) FROM {table} WHERE list_contains($u, user_id) OR "
                                   "list_contains($t, tenant_id)", {"u": SUBJECTS["user_id"],
                                                                    "t": SUBJECTS["tenant_id"]}).fetchone()[0]
                for table in TABLES}


def _named(event: dict) -> bool:
    return event["user_id"] in SUBJECTS["user_id"] or event["tenant_id"] in SUBJECTS["tenant_id"]


def test_non_ascii_escaped_tenant_wide_and_open_segment_opt_outs_hold_through_rematerialization(tmp_path):
    spec = SimulationSpec(source=SOURCE, start=DAYS[0], days=2, users=3, sessions_per_user_day=1, seed=4)
    landing = LocalLandingStore(tmp_path / "landing")
    simulate(spec, landing, LocalLandingStore(tmp_path / "truth"), half_right, "t")
    users = [p.user_id for p in make_personas(3, spec.seed)]
    for day in DAYS:
        own = {u: gzip.decompress((tmp_path / "landing" / f"{day}/sim-4-{u}.jsonl.gz").read_bytes()).splitlines()
               for u in users}
        landing.write(f"{day}/ide-zoe.jsonl", _copy(own[users[0]], "z", user_id="zoë"))
        landing.write(f"{day}/ide-alice.jsonl", _copy(own[users[1]], "a", escaped=True, user_id="alice"))
        landing.write(f"{day}/ide-evil.jsonl.gz", gzip.compress(_copy(own[users[2]], "e", tenant_id="evil-corp")))
    # A capture server died with a segment open: its events are published at its next start.
    segment = tmp_path / "landing" / "_capture" / "n1" / f"{DAYS[1]}--capture-n1-1.jsonl"
    segment.parent.mkdir(parents=True)
    segment.write_bytes(_copy(own[users[0]], "s", user_id="zoë"))

    resources = {"landing": LandingZone(url=str(tmp_path / "landing"), s3=S3Resource()),
                 "warehouse": Warehouse(path=str(tmp_path / "wh.duckdb")),
                 "opt_out": OptOutList(path=str(tmp_path / "opt_out.txt")),
                 "models": ModelRegistry(url=str(tmp_path / "registry"), s3=S3Resource(),
                                         cache_dir=str(tmp_path / "cache"))}
    instance = dg.DagsterInstance.ephemeral()

    def harvest() -> None:
        for day in DAYS:
            result = dg.materialize([raw_sessions, refined_targets, filtered_dataset], partition_key=day.isoformat(),
                                    resources=resources, instance=instance)
            assert result.success and all(c.passed for c in result.get_asset_check_evaluations())

    harvest()
    before = _subjects_in(tmp_path / "wh.duckdb")
    assert all(before.values()), before

    (tmp_path / "opt_out.txt").write_text("user:zoë\nuser:alice\ntenant:evil-corp\n", encoding="utf-8")
    result = opt_out_purge_job.execute_in_process(resources=resources, instance=instance)
    assert result.success
    reports = result.output_for_node("purge_opted_out")
    assert {r["subject"] for r in reports} == {"user:zoë", "user:alice", "tenant:evil-corp"}
    assert all(r["landing_lines"] > 0 for r in reports), reports  # each found: audited as it happened
    landed = _landed(tmp_path / "landing")
    assert landed and not [e for e in landed if _named(e)]
    assert segment.exists() and not [e for e in _landed(segment.parent) if _named(e)]
    assert _subjects_in(tmp_path / "wh.duckdb") == dict.fromkeys(TABLES, 0)

    # What a client retries, or a backup restores, after the purge never comes back either.
    landing.write(f"{DAYS[0]}/late-retry.jsonl", _copy(own[users[0]], "r", user_id="zoë"))
    harvest()
    assert _subjects_in(tmp_path / "wh.duckdb") == dict.fromkeys(TABLES, 0)
    with warehouse.connect(tmp_path / "wh.duckdb", read_only=True) as con:
        assert con.execute("SELECT sum(opted_out) FROM ingest_log").fetchone()[0] > 0
        assert con.execute("SELECT count(*) FROM raw_sessions").fetchone()[0] > 0  # the others stay


def test_a_live_servers_open_segment_is_purged_once_the_server_publishes_it(tmp_path):
    import threading

    from echo_dagster import retention
    from echo_dagster.capture.tokens import TokenStore
    from echo_dagster_tests.test_capture import Server
    from echo_dagster_tests.test_tenancy import session

    server = Server(tmp_path)
    token = TokenStore(server.tokens).add("acme")
    server.start()
    events = [{**e, "user_id": "zoë"} for e in session("acme", datetime.now(timezone.utc))]
    events += [{**e, "user_id": "stays", "event_id": f"k{e['event_id']}"} for e in events]
    assert server.post("\n".join(json.dumps(e, ensure_ascii=False) for e in events).encode(), token).status_code == 200
    assert len(server.open_segments()) == 1  # the server appends to it: the purge must not rewrite it now
    threading.Timer(2.0, server.stop).start()  # a clean stop publishes it into today's folder
    with warehouse.connect(tmp_path / "wh.duckdb") as con:
        report = retention.purge_subject(con, LocalLandingStore(server.landing), None, user_id="zoë",
                                         segment_wait_s=60)
    assert report.landing_lines == len(events) // 2
    assert [e["user_id"] for e in server.landed()] == ["stays"] * (len(events) // 2)
