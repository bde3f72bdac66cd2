"""Retention and opt-out purges as real Dagster runs over real harvested partitions."""

import gzip
import json
from datetime import date, datetime, timezone

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from echo_dagster import warehouse
from echo_dagster.defs.filtered_dataset_asset import filtered_dataset
from echo_dagster.defs.raw_sessions_asset import raw_sessions
from echo_dagster.defs.refined_targets_asset import refined_targets
from echo_dagster.defs.resources import LandingZone, ModelRegistry, OptOutList, Warehouse
from echo_dagster.defs.retention import opt_out_purge_job, opt_out_sensor, retention_job
from echo_dagster.landing import LocalLandingStore
from echo_dagster.simulate.run import SimulationSpec, simulate
from echo_dagster.simulate.users import make_personas
from echo_dagster.training.registry import Registry
from echo_dagster_tests.test_simulate import SOURCE, half_right

DAYS = (date(2026, 11, 2), date(2026, 11, 3))
TABLES = ("raw_sessions", "refined_targets", "filtered_dataset")


@pytest.fixture(params=["duckdb", "parquet"])
def harvested(tmp_path, request):
    """Two simulated days harvested through filtered_dataset, in a DuckDB file or Parquet files."""
    spec = SimulationSpec(source=SOURCE, start=DAYS[0], days=2, users=3, sessions_per_user_day=1, seed=4)
    simulate(spec, LocalLandingStore(tmp_path / "landing"), LocalLandingStore(tmp_path / "truth"), half_right, "t")
    resources = {"landing": LandingZone(url=str(tmp_path / "landing"), s3=S3Resource()),
                 "warehouse": Warehouse(path=str(tmp_path / "wh.duckdb") if request.param == "duckdb"
                                        else f"parquet:{tmp_path / 'pq'}"),
                 "opt_out": OptOutList(path=str(tmp_path / "opt_out.txt")),
                 "models": ModelRegistry(url=str(tmp_path / "registry"), s3=S3Resource(),
                                         cache_dir=str(tmp_path / "cache"))}
    instance = dg.DagsterInstance.ephemeral()
    for day in DAYS:
        assert dg.materialize([raw_sessions, refined_targets, filtered_dataset], partition_key=day.isoformat(),
                              resources=resources, instance=instance).success
    return resources, instance, spec, resources["warehouse"].path


def _count(db, sql, **params):
    with warehouse.connect(db, read_only=True) as con:
        return con.execute(sql, params).fetchone()[0]


def test_raw_experience_past_its_retention_is_purged_and_audited(harvested, tmp_path):
    resources, instance, _, db = harvested
    kept_before = _count(db, "SELECT count(*) FROM filtered_dataset")
    keep_days = (datetime.now(timezone.utc).date() - DAYS[1]).days  # keeps DAYS[1] and later
    result = retention_job.execute_in_process(resources=resources, instance=instance,
                                              run_config={"ops": {"purge_expired_data": {"config": {
                                                  "keep_days": keep_days}}}})
    assert result.success
    report = result.output_for_node("purge_expired_data")
    assert report["landing_files"] > 0 and report["rows"]["raw_sessions"] > 0
    assert not (tmp_path / "landing" / DAYS[0].isoformat()).exists()
    assert (tmp_path / "landing" / DAYS[1].isoformat()).is_dir()
    for table in ("raw_sessions", "refined_targets", "final_documents", "quarantine"):
        assert _count(db, f"SELECT count(*) FROM {table} WHERE partition_date < $d", d=DAYS[1]) == 0, table
    assert _count(db, "SELECT count(*) FROM raw_sessions WHERE partition_date = $d", d=DAYS[1]) > 0
    assert _count(db, "SELECT count(*) FROM filtered_dataset") == kept_before  # de-identified data stays
    assert _count(db, "SELECT count(*) FROM audit_log WHERE action = 'expire'") == 1
    refused = retention_job.execute_in_process(resources=resources, instance=instance, raise_on_error=False,
                                               run_config={"ops": {"purge_expired_data": {"config": {"keep_days": 0}}}})
    assert not refused.success and "greater than or equal to 1" in str(refused.all_events)


def _publish(registry: Registry, tmp_path, name: str, partitions: dict) -> None:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "echo_meta.json").write_text(json.dumps({"kind": "echo", "created_at": name,
                                                       "data": {"rows_per_partition": partitions}}))
    registry.publish(folder, name)


def test_an_opt_out_purges_the_past_and_marks_checkpoints_trained_on_it(harvested, tmp_path):
    resources, instance, spec, db = harvested
    gone = next(p.user_id for p in make_personas(3, spec.seed)
                if _count(db, "SELECT count(*) FROM filtered_dataset WHERE user_id = $u AND drop_reason IS NULL "
                              "AND split = 'train'", u=p.user_id))
    trained_on = {d.isoformat() for (d,) in warehouse_rows(db, "SELECT DISTINCT partition_date FROM filtered_dataset "
                                                              "WHERE user_id = $u AND split = 'train' AND drop_reason "
                                                              "IS NULL", u=gone)}
    registry = resources["models"].registry()
    _publish(registry, tmp_path, "echo-with", {d: 1 for d in trained_on})
    _publish(registry, tmp_path, "echo-without", {"2026-10-01": 5})
    others = {t: _count(db, f"SELECT count(*) FROM {t} WHERE user_id <> $u", u=gone) for t in TABLES}
    assert all(_count(db, f"SELECT count(*) FROM {t} WHERE user_id = $u", u=gone) for t in TABLES)

    (tmp_path / "opt_out.txt").write_text(f"user:{gone}\n")
    sensor = dg.build_sensor_context(instance=instance, resources={"opt_out": resources["opt_out"]})
    request = opt_out_sensor(sensor)
    assert isinstance(request, dg.RunRequest) and request.run_key.startswith("opt-out-")
    assert isinstance(opt_out_sensor(dg.build_sensor_context(instance=instance, cursor=sensor.cursor, resources={
        "opt_out": resources["opt_out"]})), dg.SkipReason)  # unchanged list: no second purge

    result = opt_out_purge_job.execute_in_process(resources=resources, instance=instance)
    assert result.success
    (report,) = result.output_for_node("purge_opted_out")
    assert report["landing_lines"] > 0 and report["checkpoints_marked"] == ["echo-with"]
    for table in TABLES:
        assert _count(db, f"SELECT count(*) FROM {table} WHERE user_id = $u", u=gone) == 0, table
        assert _count(db, f"SELECT count(*) FROM {table} WHERE user_id <> $u", u=gone) == others[table], table
    lines = [json.loads(line) for f in sorted((tmp_path / "landing").rglob("*.jsonl.gz")) for line in gzip.open(f)]
    assert lines and all(e["user_id"] != gone for e in lines)
    assert registry.marks("echo-with")[0]["subject"] == f"user:{gone}" and registry.marks("echo-without") == []
    with pytest.raises(ValueError, match="cannot be champion"):
        registry.set_champion("echo-with", "test")
    assert _count(db, "SELECT count(*) FROM audit_log WHERE action = 'opt_out' AND subject = $s",
                  s=f"user:{gone}") == 1
    again = opt_out_purge_job.execute_in_process(resources=resources, instance=instance)
    (report,) = again.output_for_node("purge_opted_out")
    assert report["landing_lines"] == 0 and sum(report["rows"].values()) == 0  # nothing left to purge


def warehouse_rows(db, sql, **params):
    with warehouse.connect(db, read_only=True) as con:
        return con.execute(sql, params).fetchall()
