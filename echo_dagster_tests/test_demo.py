"""The demo command end to end: a real landing zone, a real Dagster instance, real runs."""

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import dagster as dg


def test_demo_writes_logs_and_materializes_raw_sessions_in_the_instance(echo_home):
    env = {**os.environ, "ECHO_HOME": str(echo_home), "DAGSTER_HOME": str(echo_home / "dagster")}
    done = subprocess.run(
        [sys.executable, "-m", "echo_dagster.cli", "demo", "--days", "2", "--sessions-per-day", "5"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    days = {(yesterday - timedelta(days=n)).isoformat() for n in range(2)}
    for day in days:
        assert f"harvest_job[{day}]: success" in done.stdout
    assert (echo_home / "echo.duckdb").is_file() and (echo_home / "landing" / yesterday.isoformat()).is_dir()

    instance = dg.DagsterInstance.from_config(str(echo_home / "dagster"))
    try:
        assert instance.get_materialized_partitions(dg.AssetKey("raw_sessions")) == days
        runs = instance.get_runs(dg.RunsFilter(job_name="harvest_job"))
        assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        record = instance.get_latest_materialization_event(dg.AssetKey("raw_sessions"))
        assert record.asset_materialization.metadata["events_kept"].value > 0
    finally:
        instance.dispose()
