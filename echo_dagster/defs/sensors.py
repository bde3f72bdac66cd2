import json

import dagster as dg

from echo_dagster import env, tenancy
from echo_dagster.defs.finetuned_checkpoint_asset import finetuned_checkpoint
from echo_dagster.defs.jobs import eval_job, train_job
from echo_dagster.defs.resources import ModelRegistry, Warehouse
from echo_dagster.training.window import tenant_filter, training_rows_after
from echo_dagster.warehouse import WarehouseBusy

# A tick must end well within the daemon's sensor timeout (60 s); a harvest holds the warehouse
# only for its last short write.
WAREHOUSE_WAIT_S = 20.0


def threshold() -> int:
    return env.retrain_threshold()


@dg.sensor(
    job=train_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Every 5 minutes: requests train_job when {threshold():,} training examples "
                "(ECHO_RETRAIN_THRESHOLD) arrived in partitions after the latest Echo checkpoint's data cutoff: "
                "for the pooled model, and for each tenant whose policy is own, on its rows alone. "
                "Run key: the model and that cutoff, so a training of the same data is never launched twice.",
)
def retrain_sensor(context: dg.SensorEvaluationContext, warehouse: Warehouse, models: ModelRegistry):
    needed, registry = threshold(), models.registry()
    policy = tenancy.load(env.tenant_policy_path())
    requests, counted, waiting = [], {}, []
    try:
        with warehouse.connect(read_only=True, wait_s=WAREHOUSE_WAIT_S) as con:
            # Tenants named `own`, and those that are by default: every tenant with rows.
            seen = {t for t, in con.execute("SELECT DISTINCT tenant_id FROM training_examples").fetchall()}
            owners = sorted(set(policy.own_tenants()) | {t for t in seen if policy.of(t) == "own"})
            for tenant in [None, *owners]:
                latest = registry.latest("echo", tenant)
                cutoff = latest["data"]["cutoff"] if latest else None
                count, newest = training_rows_after(con, cutoff, tenant_filter(policy, tenant))
                scope = tenant or "pooled"
                counted[scope] = {"cutoff": cutoff, "new_rows": count, "newest": str(newest) if newest else None}
                since = f"after the data cutoff {cutoff} of {latest['name']}" if latest else "(no checkpoint yet)"
                if count < needed:
                    waiting.append(f"{scope}: {count} training examples {since}")
                    continue
                key = f"after-{cutoff or 'start'}" if tenant is None else f"{tenant}-after-{cutoff or 'start'}"
                config = {"ops": {"finetuned_checkpoint": {"config": {"tenant": tenant}}}} if tenant else None
                requests.append(dg.RunRequest(run_key=key, run_config=config or {},
                                              tags={"echo/data_cutoff": cutoff or "none", "echo/new_rows": str(count),
                                                    "echo/trained_for": scope}))
    except WarehouseBusy:
        return dg.SkipReason(f"The warehouse stayed locked by a writer for {WAREHOUSE_WAIT_S:.0f} s; "
                             "the next tick counts again.")
    context.update_cursor(json.dumps(counted))
    if not requests:
        return dg.SkipReason("; ".join(waiting) + f"; {needed} start a training.")
    return requests


@dg.asset_sensor(
    asset_key=finetuned_checkpoint.key, job=eval_job, default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests eval_job for every new finetuned_checkpoint (run key: evaluate-<checkpoint>), so "
                "that each challenger meets the promotion gate once.",
)
def evaluate_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    materialization = asset_event.asset_materialization
    name = materialization.metadata["name"].value if materialization else asset_event.run_id
    trained_for = materialization.metadata.get("trained_for") if materialization else None
    tenant = trained_for.value if trained_for is not None and trained_for.value != "pooled" else None
    config = {"ops": {"eval_report": {"config": {"tenant": tenant}}}} if tenant else {}
    return dg.RunRequest(run_key=f"evaluate-{name}", run_config=config, tags={"echo/challenger": str(name)})
