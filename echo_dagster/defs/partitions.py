"""The daily partitions of the harvest assets, their job and schedule: UTC days, as the landing
folders are, from the day the data starts.

The first day is `ECHO_START_DATE` when it is set; otherwise the earliest day folder of the landing
zone (local or S3) when the definitions load; otherwise today. So the UI's partition bars and plots
span the days there is data for, not months of empty days before them. A landing zone that gets
earlier days later (an import of old logs) needs the code location reloaded (the UI's *Reload*)."""

import logging
from datetime import date, datetime, timezone

import dagster as dg

from echo_dagster import env
from echo_dagster.landing import open_store

log = logging.getLogger(__name__)


def first_day() -> date:
    configured = env.start_date()
    if configured:
        return date.fromisoformat(configured)
    today = datetime.now(timezone.utc).date()
    url = env.landing_url()
    try:
        days = open_store(url).days()
    except Exception as exc:  # a code location must load even when the landing zone is unreachable
        if "NoSuchBucket" not in str(exc):
            log.warning(f"Could not list the landing zone {url} ({exc}); daily partitions start today. "
                        "Set ECHO_START_DATE to fix the first day.")
        days = []
    return min([*days, today])  # a folder dated in the future does not start the partitions


daily_partitions = dg.DailyPartitionsDefinition(start_date=first_day().isoformat(), timezone="UTC")
