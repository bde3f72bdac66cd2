"""Storage resources: swap a local folder for S3 by configuration alone."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import dagster as dg
import duckdb
from dagster_aws.s3 import S3Resource

from echo_dagster import env, landing, optout, warehouse
from echo_dagster.landing import LandingStore
from echo_dagster.training.registry import Registry


class LandingZone(dg.ConfigurableResource):
    """Where IDE clients (or the simulator) drop schema-v1 event files: a local folder or
    `s3://bucket/prefix`. S3 goes through dagster-aws' `S3Resource` (credentials from the usual AWS
    chain or `dg.EnvVar`s; `endpoint_url` for an S3-compatible store)."""

    url: str
    s3: S3Resource

    def store(self) -> LandingStore:
        fields = {name: getattr(self.s3, name) for name in S3Resource.model_fields}
        return landing.open_store(self.url, functools.partial(_s3_client, fields))


def _s3_client(fields: dict):
    # Module-level, from plain values: the factory must pickle (a resource instance does not).
    return S3Resource(**fields).get_client()


class Warehouse(dg.ConfigurableResource):
    """The DuckDB database file that holds the harvest tables, or `parquet:<folder | s3://…>`: one
    Parquet file per table and day, so that workers write different days at once."""

    path: str
    lock_wait_s: float = 600.0

    @contextlib.contextmanager
    def connect(self, read_only: bool = False, window=None,
                wait_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """`wait_s`: how long to wait for another process's lock (default: `lock_wait_s`)."""
        wait = self.lock_wait_s if wait_s is None else wait_s
        with warehouse.connect(self.path, read_only=read_only, wait_s=wait, window=window) as con:
            yield con


class OptOutList(dg.ConfigurableResource):
    """Users and tenants who opted out: a text file, one `user:<id>` or `tenant:<id>` a line
    (`echo_dagster.optout`; a missing file is an empty list, a malformed line an error naming it)."""

    path: str

    def load(self) -> optout.OptOut:
        return optout.load(self.path)


class ModelRegistry(dg.ConfigurableResource):
    """Where checkpoints are kept and which one is the champion: a local folder or
    `s3://bucket/prefix` (through dagster-aws' `S3Resource`; checkpoints are downloaded into
    `cache_dir` to be loaded)."""

    url: str
    s3: S3Resource
    cache_dir: str

    def registry(self) -> Registry:
        return Registry.at(self.url, self.cache_dir, self.s3.get_client() if self.url.startswith("s3://") else None)


def s3_resource() -> S3Resource:
    # Secrets only from the environment; without them boto3's default chain applies.
    secrets = {
        field: dg.EnvVar(var)
        for field, var in (
            ("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
            ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
            ("aws_session_token", "AWS_SESSION_TOKEN"),
        )
        if os.environ.get(var)
    }
    return S3Resource(endpoint_url=env.s3_endpoint_url(), **secrets)


def default_resources() -> dict:
    """The embedded default under ECHO_HOME, each path overridable by its environment variable."""
    return {
        "landing": LandingZone(url=env.landing_url(), s3=s3_resource()),
        "warehouse": Warehouse(path=str(env.warehouse_url())),
        "opt_out": OptOutList(path=env.opt_out_path()),
        "models": ModelRegistry(url=env.models_url(),
                                s3=s3_resource(), cache_dir=str(env.models_cache())),
    }
