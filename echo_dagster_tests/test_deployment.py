"""The deployment kit, checked without a Docker engine: the shipped dagster.yaml against a real
PostgreSQL with an S3 landing zone (moto), the compose file's structure, the Dockerfiles through
hadolint, the images' pins against pyproject.toml, and the GPU executors' configuration."""

import os
import shutil
import subprocess
import uuid

import boto3
import dagster as dg
import pytest
import tomllib
import yaml
from dagster_aws.s3 import S3Resource
from packaging.requirements import Requirement

from echo_dagster.defs.jobs import train_executor
from echo_dagster.defs.raw_sessions_asset import raw_sessions
from echo_dagster.defs.resources import LandingZone, OptOutList, Warehouse, default_resources
from echo_dagster.landing_fixtures import FixtureSpec, write_landing_fixtures
from echo_dagster_tests.conftest import REPO
from echo_dagster_tests.test_raw_sessions_asset import DAYS, RUN_CONFIG

DOCKER = REPO / "docker"


def test_a_partition_runs_on_postgres_instance_storage_and_an_s3_landing_zone(tmp_path, postgres, s3_endpoint,
                                                                              monkeypatch):
    for name, value in postgres.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(DOCKER / "dagster.yaml", home / "dagster.yaml")  # the deployment's own instance config
    creds = dict(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    boto3.client("s3", endpoint_url=s3_endpoint, **creds).create_bucket(Bucket="echo-deploy")
    landing = LandingZone(url=f"s3://echo-deploy/{uuid.uuid4().hex}/landing",
                          s3=S3Resource(endpoint_url=s3_endpoint, **creds))
    write_landing_fixtures(landing.store(), FixtureSpec(days=DAYS, long_line_bytes=60_000))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = dg.materialize([raw_sessions], partition_key=DAYS[0].isoformat(), run_config=RUN_CONFIG,
                                instance=instance, resources={
                                    "landing": landing, "warehouse": Warehouse(path=str(tmp_path / "wh.duckdb")),
                                    "opt_out": OptOutList(path=str(tmp_path / "opt_out.txt"))})
        assert result.success
        run_id = result.run_id
    with dg.DagsterInstance.from_config(str(home)) as instance:  # read back by a new instance
        run = instance.get_run_by_id(run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.job_name == "__ephemeral_asset_job__"
        event = instance.get_latest_materialization_event(dg.AssetKey("raw_sessions"))
        assert event.run_id == run_id and event.asset_materialization.partition == DAYS[0].isoformat()
        assert event.asset_materialization.metadata["events_kept"].value > 0
        assert instance.get_materialized_partitions(dg.AssetKey("raw_sessions")) == {DAYS[0].isoformat()}


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yaml").read_text())


def test_the_compose_stack_is_complete_and_consistent_with_the_instance_config():
    compose, instance = _compose(), yaml.safe_load((DOCKER / "dagster.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "minio", "minio-init", "user_code", "webserver", "daemon", "capture",
                             "trainer", "vllm", "serve"}
    built = {s["image"] for s in services.values() if "build" in s}
    for name, service in services.items():
        # Built here, or pulled at a pinned tag.
        assert service["image"] in built or ":" in service["image"] and not service["image"].endswith(":latest"), name
        if "build" in service:
            assert (REPO / service["build"]["dockerfile"]).is_file() and service["build"]["context"] == ".."
        for dependency in service.get("depends_on", []):
            assert dependency in services, (name, dependency)
    launcher = instance["run_launcher"]
    assert launcher["class"] == "DockerRunLauncher"
    assert compose["networks"]["echo"]["name"] == launcher["config"]["network"]
    (volume,) = launcher["config"]["container_kwargs"]["volumes"]
    assert compose["volumes"][volume.split(":")[0]]["name"] == volume.split(":")[0]
    # Every variable the launcher passes to run containers is set where runs are launched from.
    for service in ("webserver", "daemon", "user_code"):
        env = services[service]["environment"]
        assert set(launcher["config"]["env_vars"]) <= set(env), service
    assert services["user_code"]["environment"]["ECHO_TRAIN_EXECUTOR"] == "docker"
    gpu = services["trainer"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    workspace = yaml.safe_load((DOCKER / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["grpc_server"]["host"] == "user_code"
    assert instance["storage"]["postgres"]["postgres_db"]["hostname"] == {"env": "DAGSTER_POSTGRES_HOST"}


def test_vllm_serves_the_champions_adapters_on_a_gpu_behind_the_gateway():
    import argparse
    import re
    import shlex

    from echo_dagster.capture.server import add_options, upstream_from
    from echo_dagster.training.trainer import TrainSettings

    compose = _compose()
    services = compose["services"]
    vllm, gateway = services["vllm"], services["serve"]
    # Only with `--profile gpu`: a plain `docker compose up` starts neither.
    assert vllm["profiles"] == gateway["profiles"] == ["gpu"]
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+", vllm["image"])
    assert vllm["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    gpu = vllm["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    (script,) = vllm["command"]
    wait, _, started = script.rpartition("exec ")
    argv = shlex.split(started)
    assert argv[:2] == ["vllm", "serve"] and "--enable-lora" in argv
    flag = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("--")}
    # The trainer's adapters fit: vLLM takes only these ranks (vllm/config/lora.py) and refuses a larger r.
    rank = int(flag["--max-lora-rank"])
    assert rank in (8, 16, 32, 64, 128, 256, 320, 512) and rank >= TrainSettings().lora_r
    base = argv[2]
    assert base in wait  # vLLM starts once the base it serves exists
    # The shared volume, read-only: the base, and the adapters the gateway downloads into it.
    (mount,) = vllm["volumes"]
    volume, at = mount.split(":")[:2]
    assert volume == "echo-data" and mount.endswith(":ro") and base.startswith(at + "/")
    # The gateway: the real CLI's options, pointed at that server, that model, that folder.
    parser = argparse.ArgumentParser()
    add_options(parser)
    args = parser.parse_args(gateway["command"][2:])
    assert gateway["command"][:2] == ["echo-dagster", "serve"] and args.engine == "upstream"
    assert args.upstream_url == f"http://vllm:{flag['--port']}" and args.upstream_model == flag["--served-model-name"]
    assert f"echo-data:{at}" in gateway["volumes"] and args.upstream_adapter_root.startswith(at + "/")
    assert gateway["environment"]["ECHO_UPSTREAM_API_KEY"] == vllm["environment"]["VLLM_API_KEY"]
    assert upstream_from(args).adapter_root == args.upstream_adapter_root
    assert "ports" not in vllm and gateway["ports"] != services["capture"]["ports"]


def test_the_helm_values_run_the_same_images_and_environment():
    values = yaml.safe_load((DOCKER / "helm-values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["image"]["repository"].endswith("/echo-dagster-user-code")
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "echo_dagster.definitions"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["ECHO_TRAIN_EXECUTOR"] == "k8s" and "echo-dagster-trainer" in env["ECHO_TRAINER_IMAGE"]
    compose_env = _compose()["x-echo-env"]
    for name in ("ECHO_LANDING", "ECHO_MODELS", "ECHO_WAREHOUSE"):
        assert env[name] == compose_env[name], name
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert launcher["envSecrets"] == deployment["envSecrets"] and launcher["volumeMounts"] == deployment["volumeMounts"]
    assert values["postgresql"]["enabled"] is False


@pytest.mark.parametrize("dockerfile", sorted(p.name for p in DOCKER.glob("*.Dockerfile")))
def test_dockerfiles_pass_hadolint_and_copy_what_exists(dockerfile):
    path = DOCKER / dockerfile
    lint = subprocess.run([shutil.which("hadolint") or os.path.join(os.path.dirname(os.sys.executable), "hadolint"),
                           "--failure-threshold", "info", str(path)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    for line in path.read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), (dockerfile, source)


def test_the_images_pins_satisfy_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (DOCKER / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name] = version
    wanted = [Requirement(d) for d in project["dependencies"] + project["optional-dependencies"]["deploy"]]
    for requirement in wanted:
        if requirement.name == "torch":
            assert "torch" not in pins  # each image takes the build for its hardware
            continue
        assert requirement.name in pins, f"docker/requirements.txt lacks {requirement.name}"
        assert requirement.specifier.contains(pins[requirement.name]), (requirement, pins[requirement.name])
    assert len(pins) == len(wanted) - 1


@pytest.mark.parametrize("kind", ["docker", "k8s"])
def test_the_training_step_asks_for_a_gpu_in_the_trainer_image(kind, monkeypatch):
    from dagster_docker import docker_executor
    from dagster_k8s import k8s_job_executor

    from echo_dagster.defs.finetuned_checkpoint_asset import finetuned_checkpoint
    from echo_dagster.defs.jobs import gpu_executor_config

    monkeypatch.setenv("ECHO_TRAIN_EXECUTOR", kind)
    monkeypatch.setenv("ECHO_TRAINER_IMAGE", "registry.example.org/echo-trainer:1")
    config = gpu_executor_config(kind)
    # What the executor accepts: its config in a run config of a job on that executor.
    executor = {"docker": docker_executor, "k8s": k8s_job_executor}[kind]
    job = dg.Definitions(assets=[finetuned_checkpoint], jobs=[dg.define_asset_job("j", executor_def=executor)],
                         resources=default_resources()).resolve_job_def("j")
    assert dg.validate_run_config(job, {"execution": {"config": config}})
    if kind == "docker":
        assert config["image"] == "registry.example.org/echo-trainer:1"
        assert config["container_kwargs"]["device_requests"] == [{"count": -1, "capabilities": [["gpu"]]}]
    else:
        assert config["job_image"] == "registry.example.org/echo-trainer:1"
        assert config["step_k8s_config"]["container_config"]["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert train_executor().name.startswith("gpu_")
