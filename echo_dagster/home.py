"""Where the embedded default keeps everything: `ECHO_HOME` (default `./.echo`)."""

from __future__ import annotations

import os
from pathlib import Path


def echo_home() -> Path:
    return Path(os.environ.get("ECHO_HOME", ".echo")).expanduser().resolve()


def landing_url() -> str:
    return os.environ.get("ECHO_LANDING") or str(echo_home() / "landing")


def warehouse_path() -> Path | str:
    value = os.environ.get("ECHO_WAREHOUSE")
    if value and value.startswith("parquet:"):
        return value  # a URL, not a path: `parquet:s3://…` must keep its slashes
    return Path(value or echo_home() / "echo.duckdb")


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or echo_home() / "dagster")
