"""Tenants are walls, end to end through the capture endpoint with real tokens (issue 13).

Tenant C posts, first, a `document_closed` that carries tenant A's next event id and a closing
`document_snapshot` in A's session id; then tenant A posts its session. Before, A's own event was
dropped as a duplicate and C's text became A's user's training target, attributed to tenant A."""

import json
from datetime import datetime, timedelta, timezone

import dagster as dg
from dagster_aws.s3 import S3Resource

from echo_dagster import warehouse
from echo_dagster.capture.tokens import TokenStore
from echo_dagster.defs.filtered_dataset_asset import filtered_dataset
from echo_dagster.defs.raw_sessions_asset import raw_sessions
from echo_dagster.defs.refined_targets_asset import refined_targets
from echo_dagster.defs.resources import LandingZone, OptOutList, Warehouse
from echo_dagster.events import format_ts
from echo_dagster_tests.test_capture import Server

PREFIX = "import math\n\n\ndef area(r):\n    "
SUFFIX = "\n\n\ndef main():\n    print(area(2.0))\n"
OWN, STOLEN = "return math.pi * r ** 2", "return send_to('c.example', r)"


def session(tenant: str, at: datetime) -> list[dict]:
    """Tenant A's user: shown, accepted, edited, saved and closed."""
    common = {"schema_version": 1, "session_id": "s-a", "user_id": "dev-1", "tenant_id": tenant, "repo": "shop",
              "path": "geometry.py", "language": "python", "client": "vscode/1"}

    def ts(seconds: float) -> str:
        return format_ts(at + timedelta(seconds=seconds))

    return [
        {**common, "event": "completion_shown", "event_id": "a-1", "ts": ts(0), "completion_id": "c-1", "model": "m",
         "cursor": len(PREFIX), "prefix": PREFIX, "suffix": SUFFIX, "proposal": "return 3.14 * r * r",
         "latency_ms": 80.0},
        {**common, "event": "completion_accepted", "event_id": "a-2", "ts": ts(1), "completion_id": "c-1",
         "accepted_text": "return 3.14 * r * r"},
        {**common, "event": "document_snapshot", "event_id": "a-3", "ts": ts(40), "document": PREFIX + OWN + SUFFIX,
         "trigger": "save", "seq": 1},
        {**common, "event": "document_closed", "event_id": "a-4", "ts": ts(60)},
    ]


def test_no_event_of_one_tenant_changes_suppresses_or_defers_anothers(tmp_path):
    server = Server(tmp_path)
    tokens = TokenStore(server.tokens)
    token_a, token_c = tokens.add("tenant-a"), tokens.add("tenant-c")
    server.start()
    at = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    own = session("ignored: the token decides", at)
    forged = [{**own[3], "event_id": "a-4", "ts": format_ts(at + timedelta(seconds=50))},
              {**own[2], "event_id": "a-9", "trigger": "close", "document": PREFIX + STOLEN + SUFFIX,
               "ts": format_ts(at + timedelta(seconds=45))}]
    try:
        for body, token in ((forged, token_c), (own, token_a)):  # the attacker's arrive first
            answer = server.post("\n".join(json.dumps(e) for e in body).encode(), token)
            assert answer.status_code == 200 and answer.json()["accepted"] == len(body)
    finally:
        server.stop()  # publishes the open segment into today's folder

    resources = {"landing": LandingZone(url=str(server.landing), s3=S3Resource()),
                 "warehouse": Warehouse(path=str(tmp_path / "wh.duckdb")),
                 "opt_out": OptOutList(path=str(tmp_path / "opt_out.txt"))}
    # The server files today's arrivals under today, a partition that exists only tomorrow: file them a day earlier.
    today = datetime.now(timezone.utc).date()
    day = today - timedelta(days=1)
    (server.landing / today.isoformat()).rename(server.landing / day.isoformat())
    result = dg.materialize([raw_sessions, refined_targets, filtered_dataset], partition_key=day.isoformat(),
                            resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    with warehouse.connect(tmp_path / "wh.duckdb", read_only=True) as con:
        kept = con.execute("SELECT tenant_id, event_id FROM raw_sessions ORDER BY ALL").fetchall()
        assert kept == [("tenant-a", e["event_id"]) for e in own] + [("tenant-c", "a-4"), ("tenant-c", "a-9")]
        (row,) = con.execute("SELECT tenant_id, user_id, source_kind, target FROM refined_targets "
                             "WHERE target IS NOT NULL").fetchall()
        assert row == ("tenant-a", "dev-1", "accepted_edited", OWN)
        texts = con.execute("SELECT string_agg(coalesce(prefix, '') || coalesce(target, '') || coalesce(suffix, '') "
                            "|| coalesce(proposal, '') || coalesce(accepted_text, ''), '') FROM filtered_dataset "
                            "WHERE tenant_id = 'tenant-a'").fetchone()[0]
        assert "send_to" not in texts and OWN in texts
