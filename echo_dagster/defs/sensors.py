import json
import os

import dagster as dg

from echo_dagster.defs.finetuned_checkpoint_asset import finetuned_checkpoint
from echo_dagster.defs.jobs import eval_job, train_job
from echo_dagster.defs.resources import ModelRegistry, Warehouse
from echo_dagster.training.window import training_rows_after

# Training examples since the latest checkpoint's data that start a new training; the demo sets a
# small value (ECHO_RETRAIN_THRESHOLD).
DEFAULT_THRESHOLD = 5_000


@dg.sensor(job=train_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING)
def retrain_sensor(context: dg.SensorEvaluationContext, warehouse: Warehouse, models: ModelRegistry):
    """Requests train_job when enough training examples arrived in partitions after the data cutoff
    of the latest checkpoint. The run key is that cutoff: the same training is never launched twice."""
    threshold = int(os.environ.get("ECHO_RETRAIN_THRESHOLD", DEFAULT_THRESHOLD))
    latest = models.registry().latest()
    cutoff = latest["data"]["cutoff"] if latest else None
    with warehouse.connect(read_only=True) as con:
        count, newest = training_rows_after(con, cutoff)
    context.update_cursor(json.dumps({"cutoff": cutoff, "new_rows": count, "newest": str(newest) if newest else None}))
    if count < threshold:
        return dg.SkipReason(f"{count} training examples after cutoff {cutoff or '(no checkpoint yet)'}; "
                             f"{threshold} start a training")
    return dg.RunRequest(run_key=f"after-{cutoff or 'start'}",
                         tags={"echo/data_cutoff": cutoff or "", "echo/new_rows": str(count)})


@dg.asset_sensor(asset_key=finetuned_checkpoint.key, job=eval_job, default_status=dg.DefaultSensorStatus.RUNNING)
def evaluate_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    """Requests eval_job for every new checkpoint: each challenger meets the promotion gate once."""
    materialization = asset_event.asset_materialization
    name = materialization.metadata["name"].value if materialization else asset_event.run_id
    return dg.RunRequest(run_key=f"evaluate-{name}", tags={"echo/challenger": str(name)})
