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
import yaml
from dagster._core.scheduler.instigation import TickStatus

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
               "--replay-completions", "6", "--humaneval-problems", "2", env=env)
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

    # The real daemon on the demo's instance, as `make ui` starts it: every sensor ticks and requests
    # nothing; then, with evaluate_sensor's cursor gone, its run key alone keeps the evaluation from
    # running twice.
    with running_daemon(env) as started:
        ticks = wait_for_ticks(echo_home, ("retrain_sensor", "evaluate_sensor", "opt_out_sensor"), after=started)
        assert "0 training examples after the data cutoff" in ticks["retrain_sensor"].skip_reason
        assert "No new materialization events" in ticks["evaluate_sensor"].skip_reason
        forget_cursor(echo_home, "evaluate_sensor")
        again = wait_for_ticks(echo_home, ("evaluate_sensor",), after=ticks["evaluate_sensor"].timestamp + 1)
        assert again["evaluate_sensor"].run_keys == [f"evaluate-{name}"]  # requested, and found done
    instance = dg.DagsterInstance.from_config(str(echo_home / "dagster"))
    try:
        assert instance.get_runs_count() == runs
        assert not [t for n in ("retrain_sensor", "evaluate_sensor") for t in daemon_ticks(instance, n)
                    if t.status == TickStatus.FAILURE or t.run_ids and t.timestamp > started]
        # The demo's runs carry what the daemon dedupes a sensor's runs by; the demo's ticks are in the
        # sensors' history with the runs they requested.
        for job, sensor, run_key in (("train_job", "retrain_sensor", "after-start"),
                                     ("eval_job", "evaluate_sensor", f"evaluate-{name}")):
            [run] = instance.get_runs(dg.RunsFilter(job_name=job))
            assert (run.tags["dagster/sensor_name"], run.tags["dagster/run_key"]) == (sensor, run_key)
            assert [t.run_ids for t in daemon_ticks(instance, sensor) if t.timestamp < started] == [[run.run_id]]
        # Every demo run has the code location's origin, as a launched run has: the UI lists it under its job.
        origins = {(r.remote_job_origin.location_name, r.remote_job_origin.repository_origin.repository_name,
                    r.tags[".dagster/repository"]) for r in instance.get_runs() if r.remote_job_origin}
        assert instance.get_runs_count() == 5 and origins == {
            ("echo_dagster", "__repository__", "__repository__@echo_dagster")}
        assert len(instance.get_runs(dg.RunsFilter(tags={".dagster/repository": "__repository__@echo_dagster"}))) == 5
    finally:
        instance.dispose()


def test_simulate_on_a_source_that_is_not_there_says_so(echo_home, tmp_path):
    env = {**os.environ, "ECHO_HOME": str(echo_home)}
    done = cli("simulate", "--start", "2026-11-02", "--source", str(tmp_path / "nowhere"), "--landing",
               str(tmp_path / "landing"), env=env, timeout=120)
    assert done.returncode == 2
    assert "neither a folder nor an installed package" in done.stderr


@contextlib.contextmanager
def running_daemon(env: dict):
    """`dagster-daemon run` on the workspace `dagster dev` loads, in its own process group; yields
    the time it started."""
    started = time.time()
    daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                              cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield started
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()


def daemon_ticks(instance, sensor: str) -> list:
    """The sensor's ticks, newest first, found as the UI finds them: by the sensor's selector."""
    from dagster._core.definitions.selector import InstigatorSelector

    location = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"][0]["python_module"]["location_name"]
    selector_id = InstigatorSelector(location_name=location, repository_name="__repository__", name=sensor).get_id()
    return list(instance.get_ticks("(found by selector)", selector_id))


def wait_for_ticks(echo_home: Path, sensors: tuple[str, ...], after: float, timeout: float = 240) -> dict:
    """The first finished tick of each sensor after `after`."""
    deadline = time.time() + timeout
    while True:
        instance = dg.DagsterInstance.from_config(str(echo_home / "dagster"))
        try:
            found = {s: next((t for t in reversed(daemon_ticks(instance, s)) if t.timestamp > after
                              and t.status in (TickStatus.SKIPPED, TickStatus.SUCCESS, TickStatus.FAILURE)), None)
                     for s in sensors}
        finally:
            instance.dispose()
        if all(found.values()):
            assert all(t.status == TickStatus.SKIPPED and not t.run_ids for t in found.values()), {
                s: (t.status.value, t.run_ids, t.tick_data.run_keys, t.skip_reason, t.error and t.error.message)
                for s, t in found.items()}
            return found
        assert time.time() < deadline, f"no tick of {[s for s, t in found.items() if not t]} in {timeout} s"
        time.sleep(2)


def forget_cursor(echo_home: Path, sensor: str) -> None:
    from dagster._core.scheduler.instigation import InstigatorType

    instance = dg.DagsterInstance.from_config(str(echo_home / "dagster"))
    try:
        [state] = [s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
                   if s.instigator_name == sensor]
        assert state.instigator_data.cursor
        instance.update_instigator_state(state.with_data(state.instigator_data._replace(cursor=None)))
    finally:
        instance.dispose()
