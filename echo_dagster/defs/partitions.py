"""The daily partitions of the harvest assets, their job and schedule: UTC days, as the landing
folders are, from the day the data starts.

The first day is `ECHO_START_DATE` when it is set; otherwise the earliest day folder of the landing
zone (local or S3) when the definitions load; otherwise today. So the UI's partition bars and plots
span the days there is data for, not months of empty days before them. A landing zone that gets
earlier days later (an import of old logs) needs the code location reloaded (the UI's *Reload*)."""

import logging
import os
from datetime import date, datetime, timezone

import dagster as dg

from echo_dagster import home

log = logging.getLogger(__name__)


def first_day() -> date:
    configured = os.environ.get("ECHO_START_DATE")
    if configured:
        return date.fromisoformat(configured)
    today = datetime.now(timezone.utc).date()
    url = home.landing_url()
    try:
        from dagster_aws.s3 import S3Resource

        from echo_dagster.defs.resources import LandingZone

        # Outside a run, so no dg.EnvVar: boto3 reads the AWS_* variables itself.
        s3 = S3Resource(endpoint_url=os.environ.get("ECHO_S3_ENDPOINT_URL"))
        days = LandingZone(url=url, s3=s3).store().days()
    except Exception as exc:  # a code location must load even when the landing zone is unreachable
        if "NoSuchBucket" not in str(exc):
            log.warning(f"Could not list the landing zone {url} ({exc}); daily partitions start today. "
                        "Set ECHO_START_DATE to fix the first day.")
        days = []
    return min([*days, today])  # a folder dated in the future does not start the partitions


daily_partitions = dg.DailyPartitionsDefinition(start_date=first_day().isoformat(), timezone="UTC")
