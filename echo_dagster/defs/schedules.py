from datetime import timedelta

import dagster as dg

from echo_dagster.defs.jobs import harvest_job
from echo_dagster.defs.partitions import daily_partitions

# Events arrive up to a day late, so yesterday's partition is complete only tomorrow: each tick
# materializes yesterday and refreshes the day before it with the late events that came since.
REFRESH_DAYS = (1, 2)


@dg.schedule(
    job=harvest_job,
    cron_schedule="30 1 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def harvest_schedule(context: dg.ScheduleEvaluationContext):
    """Daily at 01:30 UTC: yesterday's harvest partitions, and the day before's again for late events."""
    today = context.scheduled_execution_time.date()
    existing = set(daily_partitions.get_partition_keys(current_time=context.scheduled_execution_time))
    for offset in REFRESH_DAYS:
        key = (today - timedelta(days=offset)).isoformat()
        if key in existing:
            yield dg.RunRequest(run_key=f"{key}@{today.isoformat()}", partition_key=key)
