"""Configuration from the environment: every `ECHO_*` variable (and `DAGSTER_HOME`) is read here
and nowhere else, at call time, so that a test or a command can set one before it is used.

The embedded default keeps everything under `ECHO_HOME` (default `./.echo`); each path can be
moved elsewhere — to S3 where a `s3://bucket/prefix` is accepted — by its own variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Variable:
    name: str
    default: str  # as the README shows it
    meaning: str


VARIABLES = (
    Variable("ECHO_HOME", "./.echo", "where the embedded default keeps everything"),
    Variable("DAGSTER_HOME", "$ECHO_HOME/dagster", "the Dagster instance (dagster.yaml, runs, schedules)"),
    Variable("ECHO_LANDING", "$ECHO_HOME/landing", "the landing zone: a folder or s3://bucket/prefix"),
    Variable("ECHO_WAREHOUSE", "$ECHO_HOME/echo.duckdb",
             "a DuckDB file, or parquet:<folder or s3://…> (one Parquet file per table and day)"),
    Variable("ECHO_DUCKDB_MEMORY", "2GB", "DuckDB's memory per connection before it spills to disk"),
    Variable("ECHO_OPT_OUT", "$ECHO_HOME/opt_out.txt", "users and tenants who opted out (user:<id> / tenant:<id>)"),
    Variable("ECHO_TENANT_POLICY", "$ECHO_HOME/tenant_policy.json",
             "each tenant's policy: pooled, own or excluded (see tenancy)"),
    Variable("ECHO_MODELS", "$ECHO_HOME/registry", "the model registry: a folder or s3://bucket/prefix"),
    Variable("ECHO_UPSTREAM_API_KEY", "(none)", "the bearer token of the upstream engine (`serve --engine upstream`)"),
    Variable("ECHO_S3_ENDPOINT_URL", "(AWS)", "an S3-compatible endpoint (MinIO, moto)"),
    Variable("ECHO_BASE_MODEL", "smollm2-135m", "the base model's spec (see the model runtime)"),
    Variable("ECHO_START_DATE", "the landing zone's first day", "the first daily partition (YYYY-MM-DD)"),
    Variable("ECHO_RETRAIN_THRESHOLD", "5000", "new training examples that make retrain_sensor start a training"),
    Variable("ECHO_RETENTION_DAYS", "30", "days of raw experience retention_job keeps"),
    Variable("ECHO_TRAIN_EXECUTOR", "in_process", "where training runs: in_process, docker or k8s"),
    Variable("ECHO_TRAINER_IMAGE", "echo-dagster-trainer", "the trainer image of the docker and k8s executors"),
)


def _get(name: str) -> str | None:
    return os.environ.get(name) or None


def echo_home() -> Path:
    return Path(_get("ECHO_HOME") or ".echo").expanduser().resolve()


def dagster_home() -> Path:
    return Path(_get("DAGSTER_HOME") or echo_home() / "dagster")


def landing_url() -> str:
    return _get("ECHO_LANDING") or str(echo_home() / "landing")


def warehouse_url() -> str:
    """A DuckDB file's path, or `parquet:<folder | s3://…>`."""
    return _get("ECHO_WAREHOUSE") or str(echo_home() / "echo.duckdb")


def duckdb_memory() -> str:
    return _get("ECHO_DUCKDB_MEMORY") or "2GB"


def opt_out_path() -> str:
    return _get("ECHO_OPT_OUT") or str(echo_home() / "opt_out.txt")


def tenant_policy_path() -> str:
    return _get("ECHO_TENANT_POLICY") or str(echo_home() / "tenant_policy.json")


def models_url() -> str:
    return _get("ECHO_MODELS") or str(echo_home() / "registry")


def models_cache() -> Path:
    """Where models are converted and checkpoints downloaded to be loaded."""
    return echo_home() / "models"


def upstream_api_key() -> str | None:
    return _get("ECHO_UPSTREAM_API_KEY")


def s3_endpoint_url() -> str | None:
    return _get("ECHO_S3_ENDPOINT_URL")


def base_model() -> str:
    return _get("ECHO_BASE_MODEL") or "smollm2-135m"


def start_date() -> str | None:
    return _get("ECHO_START_DATE")


def retrain_threshold() -> int:
    return int(_get("ECHO_RETRAIN_THRESHOLD") or 5_000)


def retention_days() -> int:
    return int(_get("ECHO_RETENTION_DAYS") or 30)


def train_executor() -> str:
    return _get("ECHO_TRAIN_EXECUTOR") or "in_process"


def trainer_image() -> str:
    return _get("ECHO_TRAINER_IMAGE") or "echo-dagster-trainer"
