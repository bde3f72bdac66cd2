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
    description="Daily at 01:30 UTC: harvest_job for yesterday's partition, and for the day before's again to "
                "adopt the events that arrived a day late. Run keys <day>@<today>: a tick never launches a run "
                "twice.",
)
def harvest_schedule(context: dg.ScheduleEvaluationContext):
    today = context.scheduled_execution_time.date()
    existing = set(daily_partitions.get_partition_keys(current_time=context.scheduled_execution_time))
    keys = [(today - timedelta(days=offset)).isoformat() for offset in REFRESH_DAYS]
    wanted = [key for key in keys if key in existing]
    if not wanted:
        return dg.SkipReason(f"No partition to harvest: {' and '.join(keys)} come before the first daily partition "
                             f"({daily_partitions.start.date().isoformat()}).")
    return [dg.RunRequest(run_key=f"{key}@{today.isoformat()}", partition_key=key) for key in wanted]
