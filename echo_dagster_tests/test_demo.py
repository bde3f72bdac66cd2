"""The command line end to end: a real landing zone, a real Dagster instance, real runs."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg

from echo_dagster_tests.conftest import REPO


def cli(*args, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "echo_dagster.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_demo_materializes_the_whole_graph_end_to_end(echo_home, tiny_model_dir):
    # The partitions start where the demo's landing zone does, as without ECHO_START_DATE.
    env = {**{k: v for k, v in os.environ.items() if k != "ECHO_START_DATE"}, "ECHO_HOME": str(echo_home),
           "DAGSTER_HOME": str(echo_home / "dagster"),
           "ECHO_RETRAIN_THRESHOLD": "8"}  # this small demo harvests a dozen or so training examples
    done = cli("demo", "--days", "2", "--users", "3", "--sessions-per-user-day", "1", "--model", str(tiny_model_dir),
               "--source", str(REPO / "echo_dagster"), "--train-steps", "3", "--eval-rows", "8",
               "--replay-completions", "6", "--humaneval-lines", "4", env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert '"completions":' in done.stdout and "ground truth:" in done.stdout
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    days = {(yesterday - timedelta(days=n)).isoformat() for n in range(2)}
    for day in days:
        assert f"harvest_job[{day}]: success" in done.stdout
    assert "retrain_sensor: requests train_job" in done.stdout, done.stdout[-1500:]
    for job in ("train_job", "baseline_job", "eval_job"):
        assert f"{job}: success" in done.stdout
    assert "promotion gate: " in done.stdout
    report = Path(done.stdout.split("report: ", 1)[1].split()[0])
    assert report.is_file() and report.is_relative_to(echo_home / "reports")
    # Traceable: the commit and config it was measured with, and every row's target and proposals.
    figures = json.loads((report.parent / "report.json").read_text())
    assert figures["provenance"]["config"]["max_rows"] == 8
    raw = json.loads((report.parent / "scores.json").read_text())
    assert raw["provenance"]["commit"] and len(raw["rows"]["target"]) == figures["eval_rows"] > 0
    assert all(len(m["scores"]["proposal"]) == figures["eval_rows"] for m in raw["models"].values())
    registry = echo_home / "registry"
    decisions = [json.loads(p.read_text()) for p in (registry / "decisions").glob("*.json")]
    assert len(decisions) == 1 and decisions[0]["champion"] == str(tiny_model_dir)
    assert (registry / "champion.json").is_file() == decisions[0]["promoted"]
    assert (echo_home / "echo.duckdb").is_file() and (echo_home / "landing-truth").is_dir()

    instance = dg.DagsterInstance.from_config(str(echo_home / "dagster"))
    try:
        assert instance.get_materialized_partitions(dg.AssetKey("raw_sessions")) == days
        runs = instance.get_runs(dg.RunsFilter(job_name="harvest_job"))
        assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        record = instance.get_latest_materialization_event(dg.AssetKey("raw_sessions"))
        metadata = record.asset_materialization.metadata
        assert metadata["events_kept"].value > 0 and metadata["quarantined"].value == 0
        for asset in ("finetuned_checkpoint", "repository_checkpoint", "eval_report"):
            assert instance.get_latest_materialization_event(dg.AssetKey(asset)) is not None, asset
        report_meta = instance.get_latest_materialization_event(dg.AssetKey("eval_report")).asset_materialization.metadata
        roles = {role for m in report_meta["figures"].value["models"] for role in m["roles"]}
        assert roles == {"base", "champion", "challenger", "repository"}
        # The comparison as narrow tables the UI shows inline, acceptance first.
        acceptance = report_meta["acceptance"].value
        assert [c.name for c in acceptance.schema.columns][:3] == ["model", "acceptance", "95% interval"]
        assert [r.data["model"] for r in acceptance.records] == ["challenger", "champion, base", "repository"]
        assert "data:image/png" in report_meta["chart_png"].value
        check = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(dg.AssetKey("eval_report"), "promotion_gate"))
        evaluation = check.event.dagster_event.event_specific_data
        assert evaluation.passed == decisions[0]["promoted"]
        [checkpoint] = instance.fetch_materializations(dg.AssetKey("finetuned_checkpoint"), limit=1).records
        name = checkpoint.asset_materialization.metadata["name"].value
        runs = instance.get_runs_count()
    finally:
        instance.dispose()

    # The real daemon on the demo's instance, as `make ui` starts it: every sensor ticks and nothing
    # runs again (evaluate_sensor asks for the checkpoint's evaluation, and finds its run key done).
    with running_daemon(env, echo_home / "daemon.log") as log:
        wait_for(log, [f"sensor: {s}" for s in ("retrain_sensor", "evaluate_sensor", "opt_out_sensor")])
        wait_for(log, [f"evaluate-{name}"])
        time.sleep(5)  # what the ticks requested would be launched by now
    instance = dg.DagsterInstance.from_config(str(echo_home / "dagster"))
    try:
        assert instance.get_runs_count() == runs, log.read_text()[-3000:]
        # The demo's runs carry what the daemon dedupes a sensor's runs by.
        for job, sensor, run_key in (("train_job", "retrain_sensor", "after-start"),
                                     ("eval_job", "evaluate_sensor", f"evaluate-{name}")):
            [run] = instance.get_runs(dg.RunsFilter(job_name=job))
            assert (run.tags["dagster/sensor_name"], run.tags["dagster/run_key"]) == (sensor, run_key)
    finally:
        instance.dispose()
    assert "Traceback" not in log.read_text()


def test_simulate_on_a_source_that_is_not_there_says_so(echo_home, tmp_path):
    env = {**os.environ, "ECHO_HOME": str(echo_home)}
    done = cli("simulate", "--start", "2026-11-02", "--source", str(tmp_path / "nowhere"), "--landing",
               str(tmp_path / "landing"), env=env, timeout=120)
    assert done.returncode == 2
    assert "neither a folder, an installed package" in done.stderr


@contextlib.contextmanager
def running_daemon(env: dict, log: Path):
    """`dagster-daemon run` on the workspace `dagster dev` loads, in its own process group, its log
    in `log`."""
    with open(log, "wb") as out:
        daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                                  cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            yield log
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()


def wait_for(log: Path, texts: list[str], timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not all(t in log.read_text() for t in texts):
        assert time.time() < deadline, f"not in the daemon's log after {timeout} s: " + ", ".join(
            t for t in texts if t not in log.read_text()) + "\n" + log.read_text()[-3000:]
        time.sleep(2)
