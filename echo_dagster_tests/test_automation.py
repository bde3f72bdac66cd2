"""The code location as Dagster loads it: job, schedule, instance configuration."""

import importlib
from datetime import datetime, timezone

import dagster as dg
import yaml

from echo_dagster.defs.schedules import harvest_schedule
from echo_dagster_tests.conftest import REPO


def test_the_code_location_loads_with_the_harvest_job_and_schedule(echo_home):
    import echo_dagster.definitions

    defs = importlib.reload(echo_dagster.definitions).defs  # resources read ECHO_HOME when the module loads

    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("harvest_job")
    assert job.partitions_def.get_partition_keys(current_time=datetime(2026, 1, 3, tzinfo=timezone.utc)) == [
        "2026-01-01", "2026-01-02"]
    assert defs.resolve_schedule_def("harvest_schedule").job_name == "harvest_job"
    assert defs.resources["warehouse"].path == str(echo_home / "echo.duckdb")
    assert defs.resources["landing"].url == str(echo_home / "landing")


def tick(when: datetime) -> list[dg.RunRequest]:
    from echo_dagster.definitions import defs

    context = dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def())
    return list(harvest_schedule.evaluate_tick(context).run_requests)


def test_the_daily_schedule_asks_for_yesterday_and_refreshes_the_day_before():
    requests = tick(datetime(2026, 11, 21, 1, 30, tzinfo=timezone.utc))
    assert [(r.partition_key, r.run_key) for r in requests] == [
        ("2026-11-20", "2026-11-20@2026-11-21"), ("2026-11-19", "2026-11-19@2026-11-21")]


def test_the_schedule_asks_for_nothing_before_the_first_partition():
    assert [r.partition_key for r in tick(datetime(2026, 1, 2, 1, 30, tzinfo=timezone.utc))] == ["2026-01-01"]


def test_dagster_yaml_gives_every_pool_one_slot_so_training_runs_alone():
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    with dg.instance_for_test(overrides=config) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
