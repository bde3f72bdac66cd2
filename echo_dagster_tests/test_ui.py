"""The code location as a new user meets it in the UI: the Launchpads' default config, the
descriptions, a fresh instance's sensor and schedule ticks, the first daily partition, and metadata
that plots across partitions."""

import importlib
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest
import yaml

from echo_dagster_tests.conftest import REPO
from echo_dagster_tests.launchpad import IS_VALID, REPOSITORY, ROOT_DEFAULT_YAML, js_yaml_roundtrip, webserver_context

REPOSITORY_NAME = "__repository__"


def load_defs() -> dg.Definitions:
    import echo_dagster.definitions

    return importlib.reload(echo_dagster.definitions).defs  # resources read ECHO_HOME when the module loads


@pytest.fixture
def webserver(echo_home, tmp_path):
    """The GraphQL API of `dagster dev` on an empty ECHO_HOME, over a real code server."""
    from dagster_graphql.test.utils import execute_dagster_graphql

    with dg.instance_for_test(temp_dir=str(echo_home / "dagster")) as instance, \
            webserver_context(REPO, instance, tmp_path) as (context, location):
        def query(text: str, **variables) -> dict:
            return execute_dagster_graphql(context, text, variables).data

        repository = query(REPOSITORY, selector={"repositoryLocationName": location,
                                                  "repositoryName": REPOSITORY_NAME})["repositoryOrError"]
        assert repository["__typename"] == "Repository", repository
        yield query, location, repository


def test_every_launchpad_opens_with_a_default_config_that_validates(webserver):
    """The job Launchpad shows rootDefaultYaml; the asset Launchpad re-writes it in the browser
    (YAML 1.2) before the webserver reads it back (YAML 1.1): both must validate, for every job."""
    query, location, repository = webserver
    jobs = [job["name"] for job in repository["jobs"]]
    assert {"harvest_job", "train_job", "baseline_job", "eval_job", "retention_job", "opt_out_purge_job"} <= set(jobs)
    assert any(job["isAssetJob"] and job["name"].startswith("__ASSET_JOB") for job in repository["jobs"])
    invalid = {}
    for job in jobs:
        selector = {"repositoryLocationName": location, "repositoryName": REPOSITORY_NAME, "pipelineName": job}
        schema = query(ROOT_DEFAULT_YAML, selector=selector)["runConfigSchemaOrError"]
        assert schema["__typename"] == "RunConfigSchema", (job, schema)
        for launchpad, text in (("job", schema["rootDefaultYaml"]),
                                ("asset", js_yaml_roundtrip(schema["rootDefaultYaml"]))):
            result = query(IS_VALID, pipeline=selector, runConfigData=text)["isPipelineConfigValid"]
            if result["__typename"] != "PipelineConfigValidationValid":
                invalid[f"{job} ({launchpad} Launchpad)"] = [e["message"] for e in result.get("errors", [])] or result
    assert not invalid, "\n".join(f"{where}: {errors}" for where, errors in invalid.items())


def test_what_the_asset_launchpad_does_to_yaml_is_what_made_mixed_precision_a_boolean():
    written = js_yaml_roundtrip("mixed_precision: 'no'\nlr: 1.0e-07\nday: '2026-01-01'\nsteps: 16\nw: 600.0\n")
    assert written == "mixed_precision: no\nlr: 1e-7\nday: 2026-01-01\nsteps: 16\nw: 600\n"
    assert yaml.safe_load(written) == {"mixed_precision": False, "lr": "1e-7", "day": date(2026, 1, 1), "steps": 16,
                                       "w": 600}


def test_every_job_sensor_and_schedule_has_a_description_the_ui_shows(webserver):
    _, _, repository = webserver
    named = {kind: {i["name"]: i["description"] for i in repository[kind]} for kind in ("jobs", "sensors", "schedules")}
    named["jobs"] = {n: d for n, d in named["jobs"].items() if not n.startswith("__")}  # Dagster's own asset jobs
    assert set(named["sensors"]) == {"retrain_sensor", "evaluate_sensor", "opt_out_sensor"}
    assert set(named["schedules"]) == {"harvest_schedule", "retention_schedule"}
    missing = [f"{kind}: {name}" for kind, items in named.items() for name, text in items.items()
               if not text or len(text) < 20]
    assert not missing
    for kind, suffix in (("jobs", "_job"), ("sensors", "_sensor"), ("schedules", "_schedule")):
        assert all(name.endswith(suffix) for name in named[kind]), named[kind]


def test_on_an_empty_instance_every_sensor_skips_with_a_sentence_and_every_schedule_evaluates(echo_home):
    defs = load_defs()
    assert not any(echo_home.glob("*.duckdb"))
    with dg.DagsterInstance.get() as instance:
        for sensor in defs.sensors:
            with dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs,
                                         sensor_name=sensor.name) as context:
                data = sensor.evaluate_tick(context)  # raises if the sensor does
            assert not data.run_requests, sensor.name
            assert data.skip_message and len(data.skip_message.split()) >= 5, (sensor.name, data.skip_message)
        now = datetime.now(timezone.utc)
        for schedule in defs.schedules:
            context = dg.build_schedule_context(instance=instance, scheduled_execution_time=now,
                                                repository_def=defs.get_repository_def())
            data = schedule.evaluate_tick(context)
            assert data.run_requests or data.skip_message, schedule.name
        # Before the first partition, the harvest schedule says why it asks for nothing.
        first = defs.resolve_job_def("harvest_job").partitions_def.start
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=first + timedelta(hours=1),
                                            repository_def=defs.get_repository_def())
        skip = defs.resolve_schedule_def("harvest_schedule").evaluate_tick(context).skip_message
        assert skip.startswith("No partition to harvest") and "before the first daily partition" in skip


# -- the first daily partition

def test_the_partitions_start_where_the_landing_zone_does(tmp_path, monkeypatch):
    from echo_dagster.defs.partitions import first_day

    monkeypatch.delenv("ECHO_START_DATE")
    monkeypatch.setenv("ECHO_LANDING", str(tmp_path / "landing"))
    today = datetime.now(timezone.utc).date()
    assert first_day() == today  # no landing zone yet
    for name in ("2026-11-22", "2026-11-20", "_capture", "2026-13-01", "notes"):
        (tmp_path / "landing" / name).mkdir(parents=True)
    (tmp_path / "landing" / "2019-01-01.jsonl").write_text("")  # a file, not a day folder
    (tmp_path / "landing" / (today + timedelta(days=3)).isoformat()).mkdir()  # a clock ahead
    assert first_day() == date(2026, 11, 20)
    monkeypatch.setenv("ECHO_START_DATE", "2026-10-01")
    assert first_day() == date(2026, 10, 1)


def test_the_partitions_start_where_an_s3_landing_zone_does(s3_endpoint, monkeypatch):
    import boto3

    from echo_dagster.defs.partitions import first_day

    monkeypatch.delenv("ECHO_START_DATE")
    for name, value in (("AWS_ACCESS_KEY_ID", "t"), ("AWS_SECRET_ACCESS_KEY", "t"), ("AWS_DEFAULT_REGION", "us-east-1"),
                        ("ECHO_S3_ENDPOINT_URL", s3_endpoint), ("ECHO_LANDING", "s3://first-day/landing")):
        monkeypatch.setenv(name, value)
    assert first_day() == datetime.now(timezone.utc).date()  # no bucket yet
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="first-day")
    for key in ("landing/2026-11-19/a.jsonl", "landing/2026-11-18/b.jsonl.gz", "other/2026-01-01/c.jsonl"):
        client.put_object(Bucket="first-day", Key=key, Body=b"")
    assert first_day() == date(2026, 11, 18)


def test_the_code_location_loads_with_partitions_from_the_first_landing_day(echo_home):
    import os
    import subprocess
    import sys

    (echo_home / "landing" / "2026-11-17").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "ECHO_START_DATE"}
    code = ("from echo_dagster.definitions import defs; "
            "print(defs.resolve_job_def('harvest_job').partitions_def.get_first_partition_key())")
    done = subprocess.run([sys.executable, "-c", code], env=env | {"PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=300)
    assert done.stdout.split()[-1] == "2026-11-17", done.stderr[-2000:]


# -- metadata that plots across partitions

def test_each_harvest_asset_reports_the_same_numeric_metadata_keys_every_day(tmp_path):
    from dagster_aws.s3 import S3Resource

    from echo_dagster import warehouse
    from echo_dagster.defs.filtered_dataset_asset import filtered_dataset
    from echo_dagster.defs.raw_sessions_asset import raw_sessions
    from echo_dagster.defs.refined_targets_asset import refined_targets
    from echo_dagster.defs.resources import LandingZone, OptOutList, Warehouse
    from echo_dagster.landing import LocalLandingStore
    from echo_dagster.simulate.run import SimulationSpec, simulate
    from echo_dagster.simulate.sessions import NoiseConfig
    from echo_dagster_tests.test_simulate import SOURCE, half_right

    landing, truth = LocalLandingStore(tmp_path / "landing"), LocalLandingStore(tmp_path / "truth")
    # Day one: three users, PII planted in every session; day two: one user, no PII; day three: nothing.
    simulate(SimulationSpec(source=SOURCE, start=date(2026, 11, 2), days=1, users=3, sessions_per_user_day=1, seed=11,
                            noise=NoiseConfig(pii=1.0)), landing, truth, half_right, "t")
    simulate(SimulationSpec(source=SOURCE, start=date(2026, 11, 3), days=1, users=1, sessions_per_user_day=1, seed=4,
                            noise=NoiseConfig(pii=0.0, typo=0.0, late=0.0)), landing, truth, half_right, "t")
    resources = {"landing": LandingZone(url=str(tmp_path / "landing"), s3=S3Resource()),
                 "warehouse": Warehouse(path=str(tmp_path / "wh.duckdb")),
                 "opt_out": OptOutList(path=str(tmp_path / "opt_out.txt"))}
    assets = [raw_sessions, refined_targets, filtered_dataset]
    keys, metadata, miscounted = {}, {}, []
    instance = dg.DagsterInstance.ephemeral()
    for day in ("2026-11-02", "2026-11-03", "2026-11-04"):
        result = dg.materialize(assets, partition_key=day, resources=resources, instance=instance)
        assert result.success
        with warehouse.connect(tmp_path / "wh.duckdb", read_only=True) as con:
            for asset in ("raw_sessions", "refined_targets", "filtered_dataset"):
                [m] = result.asset_materializations_for_node(asset)
                values = {k: v.value for k, v in m.metadata.items()}
                numeric = {k for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                keys.setdefault(asset, {})[day] = numeric
                metadata.setdefault(asset, {})[day] = values
                rows = con.execute(f"SELECT count(*) FROM {asset} WHERE partition_date = $d", {"d": day}).fetchone()[0]
                if values["dagster/row_count"] != rows:
                    miscounted.append(f"{asset}[{day}]: dagster/row_count {values['dagster/row_count']}, {rows} rows")
    changing = {asset: {day: sorted(k ^ by_day["2026-11-02"]) for day, k in by_day.items() if k != by_day["2026-11-02"]}
                for asset, by_day in keys.items()}
    assert not any(changing.values()), changing
    assert not miscounted, miscounted
    # The days differ where it matters: PII found on the first only, rows on the first two.
    filtered = metadata["filtered_dataset"]
    assert sum(v for k, v in filtered["2026-11-02"].items() if k.startswith("pii/")) > 0
    assert sum(v for k, v in filtered["2026-11-03"].items() if k.startswith("pii/")) == 0
    assert filtered["2026-11-03"]["dagster/row_count"] > 0 == filtered["2026-11-04"]["dagster/row_count"]
    assert filtered["2026-11-02"]["dagster/row_count"] > filtered["2026-11-02"]["kept_train"]
