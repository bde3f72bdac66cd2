"""The command line end to end: a real landing zone, a real Dagster instance, real runs."""

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import dagster as dg

from echo_dagster_tests.conftest import REPO


def cli(*args, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "echo_dagster.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_demo_simulates_experience_and_materializes_raw_sessions(echo_home, tiny_model_dir):
    env = {**os.environ, "ECHO_HOME": str(echo_home), "DAGSTER_HOME": str(echo_home / "dagster")}
    done = cli("demo", "--days", "2", "--users", "2", "--sessions-per-user-day", "1", "--model", str(tiny_model_dir),
               "--source", str(REPO / "echo_dagster"), env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert '"completions":' in done.stdout and "ground truth:" in done.stdout
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    days = {(yesterday - timedelta(days=n)).isoformat() for n in range(2)}
    for day in days:
        assert f"harvest_job[{day}]: success" in done.stdout
    assert "train_job: success" in done.stdout
    assert (echo_home / "echo.duckdb").is_file() and (echo_home / "landing-truth").is_dir()

    instance = dg.DagsterInstance.from_config(str(echo_home / "dagster"))
    try:
        assert instance.get_materialized_partitions(dg.AssetKey("raw_sessions")) == days
        runs = instance.get_runs(dg.RunsFilter(job_name="harvest_job"))
        assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        record = instance.get_latest_materialization_event(dg.AssetKey("raw_sessions"))
        metadata = record.asset_materialization.metadata
        assert metadata["events_kept"].value > 0 and metadata["quarantined"].value == 0
    finally:
        instance.dispose()


def test_simulate_on_a_source_that_is_not_there_says_so(echo_home, tmp_path):
    env = {**os.environ, "ECHO_HOME": str(echo_home)}
    done = cli("simulate", "--start", "2026-11-02", "--source", str(tmp_path / "nowhere"), "--landing",
               str(tmp_path / "landing"), env=env, timeout=120)
    assert done.returncode == 2
    assert "neither a folder nor an installed package" in done.stderr
