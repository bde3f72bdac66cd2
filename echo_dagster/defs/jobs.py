import os

import dagster as dg

harvest_job = dg.define_asset_job(
    "harvest_job",
    selection=dg.AssetSelection.groups("harvest"),
    description="Ingest, harvest and filter one day of experience (daily partitions).",
)


def train_executor() -> dg.ExecutorDefinition:
    """The training step's executor, not the harvest's: in this process by default; in deployment
    `ECHO_TRAIN_EXECUTOR=docker` or `k8s` puts the step in a container of its own (on a GPU node),
    with dagster-docker or dagster-k8s installed. One training at a time either way: the step is in
    pool `gpu`, which dagster.yaml gives one slot."""
    kind = os.environ.get("ECHO_TRAIN_EXECUTOR", "in_process")
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "docker":
        from dagster_docker import docker_executor

        return docker_executor
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"ECHO_TRAIN_EXECUTOR={kind!r}: expected in_process, docker or k8s")


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
