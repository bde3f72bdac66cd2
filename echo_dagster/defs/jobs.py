
import dagster as dg

from echo_dagster import env

harvest_job = dg.define_asset_job(
    "harvest_job",
    selection=dg.AssetSelection.groups("harvest"),
    description="Ingest, harvest and filter one day of experience (daily partitions).",
)


def train_executor() -> dg.ExecutorDefinition:
    """The training step's executor, not the harvest's: in this process by default; in deployment
    `ECHO_TRAIN_EXECUTOR=docker` or `k8s` puts the step in a container of the trainer image
    (`ECHO_TRAINER_IMAGE`) with a GPU (a device request; a `nvidia.com/gpu` limit), with
    dagster-docker or dagster-k8s installed. One training at a time either way: the step is in
    pool `gpu`, which dagster.yaml gives one slot."""
    kind = env.train_executor()
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "docker":
        from dagster_docker import docker_executor

        return docker_executor.configured(gpu_executor_config(kind), name="gpu_docker_executor")
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(gpu_executor_config(kind), name="gpu_k8s_job_executor")
    raise ValueError(f"ECHO_TRAIN_EXECUTOR={kind!r}: expected in_process, docker or k8s")


def gpu_executor_config(kind: str) -> dict:
    """The trainer image with a GPU. For Docker, the run launcher's env vars, network and volumes
    carry over to the step's container."""
    image = env.trainer_image()
    if kind == "docker":
        return {"image": image, "container_kwargs": {"device_requests": [{"count": -1, "capabilities": [["gpu"]]}]}}
    return {"job_image": image,
            "step_k8s_config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": 1}}}}}


train_job = dg.define_asset_job(
    "train_job",
    selection=dg.AssetSelection.groups("training"),
    executor_def=train_executor(),
    description="Fine-tune on the harvested training examples and register the checkpoint.",
)

baseline_job = dg.define_asset_job(
    "baseline_job",
    selection=dg.AssetSelection.groups("baseline"),
    executor_def=train_executor(),
    description="Fine-tune on plain repository files with the latest Echo checkpoint's token budget.",
)

eval_job = dg.define_asset_job(
    "eval_job",
    selection=dg.AssetSelection.groups("evaluation"),
    executor_def=train_executor(),
    description="Evaluate the latest Echo checkpoint against the base, the champion and the repository "
                "baseline; promote it when the gate says so.",
)

experiment_job = dg.define_asset_job(
    "experiment_job",
    selection=dg.AssetSelection.groups("experiment"),
    executor_def=train_executor(),
    description="The loop at a size that decides (about 100 minutes on 2 CPU cores): the arms Echo, naive logs, "
                "untrimmed final states and repository files against the base, paired, on the same held-out rows.",
)

