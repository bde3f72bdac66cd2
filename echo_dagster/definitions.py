import dagster as dg

from echo_dagster.defs.filtered_dataset_asset import filtered_dataset
from echo_dagster.defs.jobs import harvest_job
from echo_dagster.defs.raw_sessions_asset import raw_sessions
from echo_dagster.defs.refined_targets_asset import refined_targets
from echo_dagster.defs.resources import default_resources
from echo_dagster.defs.schedules import harvest_schedule

defs = dg.Definitions(
    assets=[raw_sessions, refined_targets, filtered_dataset],
    jobs=[harvest_job],
    schedules=[harvest_schedule],
    resources=default_resources(),
)
