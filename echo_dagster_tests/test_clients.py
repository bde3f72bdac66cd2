"""Importers of Continue and Tabby logs: hand-written fixtures from the published schemas, implicit
snapshots against the simulator's truth, idempotent imports, and partitions the pipeline harvests."""

import gzip
import json
from datetime import date

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from echo_dagster import warehouse
from echo_dagster.cli import main
from echo_dagster.clients.continue_dev import read_continue
from echo_dagster.clients.implicit import to_events
from echo_dagster.clients.importer import import_logs
from echo_dagster.clients.tabby import read_tabby
from echo_dagster.defs.raw_sessions_asset import raw_sessions
from echo_dagster.defs.refined_targets_asset import refined_targets
from echo_dagster.defs.resources import LandingZone, OptOutList, Warehouse
from echo_dagster.events import parse_event
from echo_dagster.landing import LocalLandingStore
from echo_dagster.simulate.client_logs import _refine_all, measure_recovery
from echo_dagster.simulate.run import SimulationSpec, simulate
from echo_dagster_tests.conftest import REPO
from echo_dagster_tests.test_simulate import SOURCE, half_right

FIXTURES = REPO / "echo_dagster_tests" / "fixtures"
CONTINUE = FIXTURES / "continue-autocomplete.jsonl"
TABBY = FIXTURES / "tabby-2026-11-10.json"


def _lines(path):
    return [(f"{path.name}:{n}", line) for n, line in enumerate(path.read_bytes().splitlines(keepends=True), 1)]


def _targets(events):
    for line in events:  # every mapped event is valid schema v1
        parse_event(json.dumps(line))
    return {row["completion_id"]: row for row in _refine_all(events)}


def test_continue_autocomplete_events_map_to_schema_v1_and_later_requests_give_final_states():
    read = read_continue(_lines(CONTINUE))
    assert read.lines == 10 and [c.completion_id for c in read.completions] == ["c-1", "c-2", "c-3", "c-8"]
    assert dict(read.skipped) == {"blank_line": 1, "bad_json": 1, "other_event": 1, "missing_field": 1,
                                  "bad_field_type": 1, "duplicate_completion": 1}
    assert {p["at"] for p in read.problems} >= {"continue-autocomplete.jsonl:5", "continue-autocomplete.jsonl:8"}
    first = read.completions[0]
    assert first.user_id.startswith("continue-") and "jane" not in first.user_id  # pseudonymous
    assert (first.path, first.language, first.model) == ("/home/jane/geo/geo.py", "python", "qwen2.5-coder:1.5b")
    mapped = to_events(read.completions, "acme")
    assert all(e["tenant_id"] == "acme" and e["cursor"] is None for e in mapped.events
               if e["event"] == "completion_shown")
    rows = _targets(mapped.events)
    # Accepted, then edited: the next request's window shows `** 2` where `* r` was proposed.
    assert (rows["c-1"]["source_kind"], rows["c-1"]["target"]) == ("accepted_edited", "return math.pi * r ** 2\n")
    # Not taken, then written by hand: the verified answer a rejection leaves.
    assert (rows["c-2"]["source_kind"], rows["c-2"]["target"]) == ("rejected_rewritten", "return 2 * math.pi * r\n")
    assert rows["c-3"]["reason"] == "no_final_snapshot"  # nothing in the log came after it
    assert rows["c-8"]["reason"] == "no_final_snapshot"
    assert mapped.with_snapshot == {"accepted": 1, "rejected": 1} and mapped.closed == 3  # geo.py idle 43 min
    assert mapped.nulls["cursor"] == 4 and mapped.nulls["reason"] == 1  # Continue says not why


def test_tabby_events_map_partial_accepts_dismissals_and_inferred_rejections():
    read = read_tabby(_lines(TABBY))
    by_id = {c.completion_id: c for c in read.completions}
    assert sorted(by_id) == ["cmpl-1", "cmpl-2", "cmpl-3", "cmpl-8"]
    assert dict(read.skipped) == {"bad_json": 1, "other_event": 1, "bad_field_type": 1, "not_viewed": 1,
                                  "action_without_completion": 1}
    assert by_id["cmpl-1"].accepted_text == "return math.pi * r * r\n"  # one line of three taken
    assert (by_id["cmpl-2"].decision, by_id["cmpl-2"].reject_reason) == ("rejected", "dismissed")
    assert (by_id["cmpl-3"].decision, by_id["cmpl-3"].reject_reason) == ("rejected", None)
    assert read.inferred == {"rejected_without_dismiss": 1}
    rows = _targets(to_events(read.completions, "acme").events)
    assert (rows["cmpl-1"]["source_kind"], rows["cmpl-1"]["target"]) == ("partially_accepted",
                                                                        "return math.pi * r ** 2\n")
    assert (rows["cmpl-2"]["source_kind"], rows["cmpl-2"]["target"]) == ("rejected_rewritten",
                                                                        "return 2 * math.pi * r\n")


def test_implicit_snapshots_recover_final_states_the_simulator_knows(tmp_path):
    spec = SimulationSpec(source=SOURCE, start=date(2026, 11, 2), days=1, users=3, sessions_per_user_day=2, seed=5)
    simulate(spec, LocalLandingStore(tmp_path / "l"), LocalLandingStore(tmp_path / "t"), half_right, "test")
    events = {}
    for f in sorted((tmp_path / "l").rglob("*.gz")):
        for line in gzip.open(f):
            event = json.loads(line)
            events[event["event_id"]] = event
    truth = [json.loads(line) for f in sorted((tmp_path / "t").rglob("*.jsonl")) for line in open(f)]
    figures = measure_recovery(list(events.values()), truth)
    full = figures["schema v1 (with snapshots)"]["accepted"]
    assert full["completions"] > 20 and full["share_right"] > 0.8
    for client in ("continue", "tabby"):
        got = figures[client]["accepted"]
        assert got["completions"] == full["completions"]
        # Only a completion with no later request in its file goes without a final state here.
        assert got["share_with_final_state"] > 0.75, figures
        assert got["right"] >= 0.9 * got["with_final_state"], figures  # and what is recovered is right


def test_importing_twice_adds_nothing_and_the_summary_says_what_was_skipped(tmp_path, capsys):
    landing = tmp_path / "landing"
    assert main(["import", "tabby", str(TABBY), "--landing", str(landing), "--tenant", "acme"]) == 0
    first = json.loads(capsys.readouterr().out)
    files = sorted(p.relative_to(landing).as_posix() for p in landing.rglob("*.gz"))
    assert files == sorted(first["written"]) and files[0].startswith("2026-11-10/import-tabby-")
    assert first["skipped"]["not_viewed"] == 1 and first["events"] == sum(first["written"].values())
    assert main(["import", "tabby", str(TABBY), "--landing", str(landing), "--tenant", "acme"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["written"] == {} and again["already_present"] == first["events"]
    assert sorted(p.relative_to(landing).as_posix() for p in landing.rglob("*.gz")) == files
    assert main(["import", "tabby", str(tmp_path / "missing.json"), "--landing", str(landing)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_imported_logs_land_in_partitions_the_pipeline_harvests(tmp_path, s3_endpoint, monkeypatch):
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket="imports")
    zone = LandingZone(url="s3://imports/landing", s3=S3Resource(endpoint_url=s3_endpoint, region_name="us-east-1"))
    summary = import_logs("continue", [CONTINUE], zone.store(), "acme")
    assert summary.completions == 4 and len(summary.written) == 1
    assert import_logs("continue", [CONTINUE], zone.store(), "acme").written == {}
    result = dg.materialize([raw_sessions, refined_targets], partition_key="2026-11-10",
                            resources={"landing": zone, "warehouse": Warehouse(path=str(tmp_path / "wh.duckdb")),
                                       "opt_out": OptOutList(path=str(tmp_path / "opt_out.txt"))},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    with warehouse.connect(tmp_path / "wh.duckdb", read_only=True) as con:
        rows = dict(con.execute("SELECT completion_id, source_kind FROM refined_targets").fetchall())
        quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    assert rows == {"c-1": "accepted_edited", "c-2": "rejected_rewritten", "c-3": None, "c-8": None}
    assert quarantined == 0


def test_an_unknown_client_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown client 'copilot'"):
        import_logs("copilot", [CONTINUE], LocalLandingStore(tmp_path), "t")
