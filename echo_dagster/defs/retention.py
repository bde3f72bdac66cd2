"""Retention and opt-out purges in Dagster: `retention_job` on a daily schedule, `opt_out_purge_job`
whenever the opt-out list changes (`opt_out_sensor`). The work is `echo_dagster.retention`'s."""

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
from pydantic import Field

from echo_dagster import env, retention
from echo_dagster.defs.resources import LandingZone, ModelRegistry, OptOutList, Warehouse


class RetentionConfig(dg.Config):
    keep_days: int = Field(
        default=env.retention_days(), ge=1,
        description="Days of raw experience kept (landing files by arrival day; raw_sessions, quarantine, "
                    "refined_targets, final_documents by partition). Default: $ECHO_RETENTION_DAYS or 30.")


def _output(report: retention.PurgeReport) -> dg.Output:
    meta = {"landing_files": report.landing_files, "landing_lines": report.landing_lines,
            **{f"rows/{table}": n for table, n in report.rows.items()}}
    if report.checkpoints_marked:
        meta["checkpoints_marked"] = ", ".join(report.checkpoints_marked)
    return dg.Output(report.as_dict(), metadata=meta)


@dg.op(description="Delete raw experience older than keep_days; append the purge to audit_log.")
def purge_expired_data(context: dg.OpExecutionContext, config: RetentionConfig, landing: LandingZone,
                       warehouse: Warehouse):
    today = datetime.now(timezone.utc).date()
    with warehouse.connect() as con:
        report = retention.purge_expired(con, landing.store(), today, config.keep_days)
    context.log.info(f"Purged {report.landing_files} landing files and rows {report.rows} ({report.subject}).")
    return _output(report)


@dg.op(description="Purge every opted-out user and tenant from the landing zone and every table; mark "
                   "the checkpoints trained on their data.")
def purge_opted_out(context: dg.OpExecutionContext, landing: LandingZone, warehouse: Warehouse,
                    opt_out: OptOutList, models: ModelRegistry):
    reports = []
    with warehouse.connect() as con:
        for kind, subject in opt_out.load().subjects():
            report = retention.purge_subject(con, landing.store(), models.registry(), **{kind: subject})
            context.log.info(f"{report.subject}: {report.as_dict()}")
            reports.append(report.as_dict())
    marked = sorted({name for r in reports for name in r["checkpoints_marked"]})
    return dg.Output(reports, metadata={
        "subjects": len(reports), "landing_lines": sum(r["landing_lines"] for r in reports),
        "rows": sum(n for r in reports for n in r["rows"].values()), "checkpoints_marked": ", ".join(marked)})


@dg.job(description="Delete raw experience past its retention (ECHO_RETENTION_DAYS, 30 days).")
def retention_job():
    purge_expired_data()


@dg.job(description="Purge the users and tenants of the opt-out list from all past data.")
def opt_out_purge_job():
    purge_opted_out()


retention_schedule = dg.ScheduleDefinition(
    name="retention_schedule", job=retention_job, cron_schedule="0 3 * * *", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily at 03:00 UTC, after the harvest: retention_job deletes raw experience older than "
                f"{RetentionConfig.model_fields['keep_days'].default} days (ECHO_RETENTION_DAYS).")


@dg.sensor(job=opt_out_purge_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Every minute: requests opt_out_purge_job when the opt-out list (ECHO_OPT_OUT) changes "
                       "(run key: its content's hash).")
def opt_out_sensor(context: dg.SensorEvaluationContext, opt_out: OptOutList):
    path = Path(opt_out.path)
    text = path.read_bytes() if path.is_file() else b""
    if not text.strip():
        return dg.SkipReason(f"Nobody opted out: {path} lists no one.")
    digest = hashlib.sha256(text).hexdigest()[:16]
    if context.cursor == digest:
        return dg.SkipReason(f"{path} is unchanged since the last purge.")
    context.update_cursor(digest)
    return dg.RunRequest(run_key=f"opt-out-{digest}")
