"""raw_sessions as a real Dagster materialization, on local and S3 landing zones."""

import uuid
from dataclasses import replace
from datetime import date
from pathlib import Path

import boto3
import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from echo_dagster import warehouse
from echo_dagster.defs.raw_sessions_asset import raw_sessions
from echo_dagster.defs.resources import LandingZone, OptOutList, Warehouse
from echo_dagster.ingest.raw_sessions import IngestSettings, ingest_partition
from echo_dagster.landing_fixtures import FixtureSpec, write_landing_fixtures

DAYS = (date(2026, 11, 1), date(2026, 11, 2))
RUN_CONFIG = {"ops": {"raw_sessions": {"config": {"max_line_bytes": 50_000}}}}


def materialize(landing: LandingZone, db, day: date, instance=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [raw_sessions], partition_key=day.isoformat(), run_config=RUN_CONFIG, instance=instance,
        resources={"landing": landing, "warehouse": Warehouse(path=str(db)),
                   "opt_out": OptOutList(path=str(Path(db).parent / "opt_out.txt"))},
    )


def check_evaluation(result: dg.ExecuteInProcessResult):
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_materialization_reports_counts_and_a_passing_accounting_check(tmp_path):
    landing = LandingZone(url=str(tmp_path / "landing"), s3=S3Resource())
    expected = write_landing_fixtures(
        landing.store(), FixtureSpec(days=DAYS, truncated_gzip_per_day=1, unsupported_files_per_day=1,
                                     long_line_bytes=60_000),
    )
    result = materialize(landing, tmp_path / "wh.duckdb", DAYS[0])
    assert result.success
    (mat,) = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in mat.materialization.metadata.items()}
    exp = expected[DAYS[0]]
    assert meta["dagster/row_count"] == meta["events_kept"] == exp.kept
    assert meta["quarantined"] == sum(exp.quarantine.values())
    assert meta["quarantined/line_too_long"] == 1 and meta["quarantined/gzip_truncated"] == 1
    assert meta["quarantined/unsupported_file"] == 1
    assert meta["late_adopted"] == exp.late_adopted and meta["duplicates"] == exp.duplicates
    assert sum(meta[f"events/{t}"] for t in ("completion_shown", "completion_accepted", "completion_rejected",
                                             "document_snapshot", "document_closed")) == exp.kept
    evaluation = check_evaluation(result)
    assert evaluation.passed and evaluation.check_name == "accounting_check"


def test_materializing_a_partition_twice_gives_the_same_rows(tmp_path):
    landing = LandingZone(url=str(tmp_path / "landing"), s3=S3Resource())
    write_landing_fixtures(landing.store(), FixtureSpec(days=DAYS, long_line_bytes=60_000))
    db = tmp_path / "wh.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    query = "SELECT * EXCLUDE (partition_date) FROM raw_sessions WHERE partition_date = '2026-11-01' ORDER BY ALL"
    assert materialize(landing, db, DAYS[0], instance).success
    with warehouse.connect(db, read_only=True) as con:
        first = con.execute(query).fetchall()
    assert materialize(landing, db, DAYS[0], instance).success
    with warehouse.connect(db, read_only=True) as con:
        assert con.execute(query).fetchall() == first
        assert con.execute("SELECT count(*) FROM raw_sessions").fetchone()[0] == len(first) > 0
    assert instance.get_materialized_partitions(dg.AssetKey("raw_sessions")) == {"2026-11-01"}


@pytest.fixture
def s3_landing(s3_endpoint):
    creds = dict(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    boto3.client("s3", endpoint_url=s3_endpoint, **creds).create_bucket(Bucket="echo-landing")
    # A prefix of its own per test: the server lives for the whole session.
    return LandingZone(url=f"s3://echo-landing/{uuid.uuid4().hex}/events",
                       s3=S3Resource(endpoint_url=s3_endpoint, **creds))


def test_an_s3_landing_zone_gives_the_same_partition_as_a_local_one(tmp_path, s3_landing):
    spec = FixtureSpec(days=DAYS, truncated_gzip_per_day=1, long_line_bytes=60_000)
    local = LandingZone(url=str(tmp_path / "landing"), s3=S3Resource())
    write_landing_fixtures(local.store(), spec)
    write_landing_fixtures(s3_landing.store(), spec)
    keys = [f.name for f in s3_landing.store().list_day(DAYS[0])]
    assert keys and all(k.startswith("2026-11-01/") for k in keys)

    for landing, db in ((local, tmp_path / "local.duckdb"), (s3_landing, tmp_path / "s3.duckdb")):
        result = materialize(landing, db, DAYS[0])
        assert result.success and check_evaluation(result).passed
    query = "SELECT * EXCLUDE (partition_date) FROM {} ORDER BY ALL"
    with warehouse.connect(tmp_path / "local.duckdb", read_only=True) as a, \
            warehouse.connect(tmp_path / "s3.duckdb", read_only=True) as b:
        for table in ("raw_sessions", "quarantine"):
            assert a.execute(query.format(table)).fetchall() == b.execute(query.format(table)).fetchall()


def test_worker_processes_read_an_s3_landing_zone_too(tmp_path, s3_landing):
    spec = FixtureSpec(days=DAYS, sessions_per_day=5, label="workers", long_line_bytes=60_000)
    write_landing_fixtures(s3_landing.store(), spec)
    settings = IngestSettings(max_line_bytes=50_000)
    inline = ingest_partition(s3_landing.store(), DAYS[0], tmp_path / "a.duckdb", settings)
    pooled = ingest_partition(s3_landing.store(), DAYS[0], tmp_path / "b.duckdb",
                              replace(settings, workers=2, parallel_min_bytes=0))
    assert pooled == inline and inline.kept > 0
