import dagster as dg

from echo_dagster.defs.eval_report_asset import eval_report
from echo_dagster.defs.experiment_asset import experiment_report
from echo_dagster.defs.filtered_dataset_asset import filtered_dataset
from echo_dagster.defs.finetuned_checkpoint_asset import finetuned_checkpoint, repository_checkpoint
from echo_dagster.defs.jobs import baseline_job, eval_job, experiment_job, harvest_job, train_job
from echo_dagster.defs.raw_sessions_asset import raw_sessions
from echo_dagster.defs.refined_targets_asset import refined_targets
from echo_dagster.defs.resources import default_resources
from echo_dagster.defs.retention import opt_out_purge_job, opt_out_sensor, retention_job, retention_schedule
from echo_dagster.defs.schedules import harvest_schedule
from echo_dagster.defs.sensors import evaluate_sensor, retrain_sensor

defs = dg.Definitions(
    assets=[raw_sessions, refined_targets, filtered_dataset, finetuned_checkpoint, repository_checkpoint,
            eval_report, experiment_report],
    jobs=[harvest_job, train_job, baseline_job, eval_job, experiment_job, retention_job, opt_out_purge_job],
    schedules=[harvest_schedule, retention_schedule],
    sensors=[retrain_sensor, evaluate_sensor, opt_out_sensor],
    resources=default_resources(),
)
