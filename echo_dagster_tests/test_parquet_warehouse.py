"""The Parquet warehouse: the same partitions as the DuckDB file, in one file per table and day
(local or S3), written by workers at once."""

import subprocess
import sys
import uuid
from datetime import date

import boto3
import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from echo_dagster import warehouse
from echo_dagster.defs.filtered_dataset_asset import filtered_dataset
from echo_dagster.defs.raw_sessions_asset import raw_sessions
from echo_dagster.defs.refined_targets_asset import refined_targets
from echo_dagster.defs.resources import LandingZone, OptOutList, Warehouse
from echo_dagster.landing import LocalLandingStore
from echo_dagster.simulate.run import SimulationSpec, simulate
from echo_dagster_tests.conftest import REPO
from echo_dagster_tests.test_simulate import SOURCE, half_right

DAYS = (date(2026, 11, 2), date(2026, 11, 3))
TABLES = {"raw_sessions": "", "quarantine": "", "ingest_log": " EXCLUDE (materialized_at)", "refined_targets": "",
          "final_documents": "", "filtered_dataset": ""}


@pytest.fixture
def landing(tmp_path):
    spec = SimulationSpec(source=SOURCE, start=DAYS[0], days=2, users=3, sessions_per_user_day=1, seed=8)
    simulate(spec, LocalLandingStore(tmp_path / "landing"), LocalLandingStore(tmp_path / "truth"), half_right, "t")
    return LandingZone(url=str(tmp_path / "landing"), s3=S3Resource())


def _harvest(landing, path, tmp_path, days=DAYS):
    resources = {"landing": landing, "warehouse": Warehouse(path=str(path)),
                 "opt_out": OptOutList(path=str(tmp_path / "opt_out.txt"))}
    instance = dg.DagsterInstance.ephemeral()
    for day in days:
        result = dg.materialize([raw_sessions, refined_targets, filtered_dataset], partition_key=day.isoformat(),
                                resources=resources, instance=instance)
        assert result.success and all(e.passed for e in result.get_asset_check_evaluations())


def _tables(path) -> dict:
    with warehouse.connect(path, read_only=True) as con:
        return {t: con.execute(f"SELECT *{exclude} FROM {t} ORDER BY ALL").fetchall() for t, exclude in TABLES.items()}


def test_parquet_partitions_hold_what_the_duckdb_file_holds(landing, tmp_path):
    _harvest(landing, tmp_path / "wh.duckdb", tmp_path)
    parquet = f"parquet:{tmp_path / 'pq'}"
    _harvest(landing, parquet, tmp_path)
    expected = _tables(tmp_path / "wh.duckdb")
    assert all(expected[t] for t in ("raw_sessions", "refined_targets", "filtered_dataset"))
    assert _tables(parquet) == expected
    files = sorted(p.relative_to(tmp_path / "pq").as_posix() for p in (tmp_path / "pq").rglob("*.parquet"))
    assert "raw_sessions/2026-11-02.parquet" in files and "filtered_dataset/2026-11-03.parquet" in files
    _harvest(landing, parquet, tmp_path, days=DAYS[:1])  # again: the partition is replaced, not added to
    assert _tables(parquet) == expected
    with warehouse.connect(parquet, read_only=True) as con:  # the views readers use
        assert con.execute("SELECT count(*) FROM training_examples").fetchone()[0] > 0
        assert con.execute("SELECT count(prefix) FROM refined_examples").fetchone()[0] > 0


def test_an_s3_parquet_warehouse(landing, tmp_path, s3_endpoint, monkeypatch):
    monkeypatch.setenv("ECHO_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("ECHO_HOME", str(tmp_path / "home"))
    for name, value in (("AWS_ACCESS_KEY_ID", "t"), ("AWS_SECRET_ACCESS_KEY", "t"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    bucket = f"wh-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    parquet = f"parquet:s3://{bucket}/warehouse"
    _harvest(landing, parquet, tmp_path, days=DAYS[:1])
    keys = sorted(o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
        Bucket=bucket)["Contents"])
    assert "warehouse/raw_sessions/2026-11-02.parquet" in keys
    _harvest(landing, tmp_path / "wh.duckdb", tmp_path, days=DAYS[:1])
    assert _tables(parquet) == _tables(tmp_path / "wh.duckdb")


WORKER = """
import sys
import dagster as dg
from dagster_aws.s3 import S3Resource
from echo_dagster.defs.raw_sessions_asset import raw_sessions
from echo_dagster.defs.refined_targets_asset import refined_targets
from echo_dagster.defs.resources import LandingZone, OptOutList, Warehouse
result = dg.materialize([raw_sessions, refined_targets], partition_key=sys.argv[3], resources={
    "landing": LandingZone(url=sys.argv[1], s3=S3Resource()), "warehouse": Warehouse(path=sys.argv[2], lock_wait_s=0.5),
    "opt_out": OptOutList(path=sys.argv[1] + "-opt-out.txt")})
sys.exit(0 if result.success else 1)
"""


def test_workers_write_different_days_at_once(landing, tmp_path):
    parquet = f"parquet:{tmp_path / 'pq'}"
    env = {"PYTHONPATH": str(REPO), "ECHO_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin",
           "ECHO_START_DATE": "2026-01-01"}  # the fixed days lie before the data an empty ECHO_HOME holds
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, landing.url, parquet, day.isoformat()], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for day in DAYS]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [o[-2000:] for o in outputs]
    with warehouse.connect(parquet, read_only=True) as con:
        days = con.execute("SELECT DISTINCT partition_date FROM refined_targets ORDER BY 1").fetchall()
    assert [d for (d,) in days] == list(DAYS)
