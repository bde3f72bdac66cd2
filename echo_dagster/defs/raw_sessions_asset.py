import dagster as dg
from pydantic import Field

from echo_dagster.defs.partitions import daily_partitions
from echo_dagster.defs.resources import LandingZone, OptOutList, Warehouse
from echo_dagster.events import EVENT_TYPES, REASONS
from echo_dagster.ingest.raw_sessions import IngestResult, IngestSettings, check_accounting, ingest_partition
from echo_dagster.ingest.reader import FILE_REASONS

ACCOUNTING_CHECK = "accounting_check"


class RawSessionsConfig(dg.Config):
    max_line_bytes: int = Field(
        default=IngestSettings.max_line_bytes, description="Lines longer than this are quarantined as line_too_long."
    )
    preview_bytes: int = Field(
        default=IngestSettings.preview_bytes, description="How much of a quarantined line the quarantine row keeps."
    )
    memory_limit: str = Field(
        default=IngestSettings.memory_limit, description="DuckDB staging memory before it spills to disk."
    )


@dg.asset(
    partitions_def=daily_partitions,
    group_name="harvest",
    kinds={"duckdb", "python"},
    owners=["team:echo"],
    check_specs=[dg.AssetCheckSpec(ACCOUNTING_CHECK, asset="raw_sessions", blocking=True,
                                   description="lines read + late adopted = kept + duplicates + quarantined + "
                                               "deferred + opted out")],
    retry_policy=dg.RetryPolicy(max_retries=2, delay=5),
)
def raw_sessions(
    context: dg.AssetExecutionContext, config: RawSessionsConfig, landing: LandingZone, warehouse: Warehouse,
    opt_out: OptOutList,
):
    """Validated events of the sessions that began on the partition's day, deduplicated by
    `event_id` and ordered within each session (`session_seq`), in DuckDB table `raw_sessions`.

    Reads landing folder D, the late events of D's sessions from folder D+1, and the session ids
    of folder D-1 (whose sessions stay with D-1). Events and sessions are the tenant's own: another
    tenant's ids never clash with them. Events of opted-out users and tenants are dropped and
    counted. Every bad line of folder D goes to table `quarantine` with its file, line number,
    reason code and raw bytes."""
    day = context.partition_time_window.start.date()
    settings = IngestSettings(
        max_line_bytes=config.max_line_bytes, preview_bytes=config.preview_bytes, memory_limit=config.memory_limit,
        lock_wait_s=warehouse.lock_wait_s,
    )
    result = ingest_partition(landing.store(), day, warehouse.path, settings, opt_out.load())
    context.log.info(
        f"{day}: {result.lines_read} lines in {len(result.files)} files -> {result.kept} events of "
        f"{result.sessions} sessions, {result.duplicates} duplicates, {result.quarantined} quarantined"
    )
    yield dg.MaterializeResult(metadata=_metadata(result, landing.url))
    with warehouse.connect(read_only=True) as con:
        check = check_accounting(con, day)
    yield dg.AssetCheckResult(
        check_name=ACCOUNTING_CHECK, passed=check.passed, description=check.description, metadata=check.figures,
        severity=dg.AssetCheckSeverity.ERROR,
    )


def _metadata(result: IngestResult, landing_url: str) -> dict:
    # Flat numeric keys (zeros included) so the UI can plot each one across partitions.
    metadata: dict = {
        "dagster/row_count": result.kept,
        "lines_read": result.lines_read,
        "events_kept": result.kept,
        "sessions": result.sessions,
        "duplicates": result.duplicates,
        "quarantined": result.quarantined,
        "late_adopted": result.late_adopted,
        "deferred_to_previous": result.deferred_to_previous,
        "opted_out": result.opted_out,
        "stale_events": result.stale_events,
        "files": len(result.files),
    }
    metadata |= {f"quarantined/{r}": result.quarantine_by_reason.get(r, 0) for r in REASONS + FILE_REASONS}
    metadata |= {f"events/{t}": result.events_by_type.get(t, 0) for t in EVENT_TYPES}
    metadata |= {f"nulls/{f}": n for f, n in result.nulls_by_field.items()}
    reasons = "\n".join(f"| {r} | {n} |" for r, n in sorted(result.quarantine_by_reason.items())) or "| (none) | 0 |"
    metadata["quarantine_summary"] = dg.MetadataValue.md(f"| reason | lines |\n| --- | --- |\n{reasons}")
    metadata["landing_files"] = dg.MetadataValue.json({"landing": landing_url, "files": result.files})
    return metadata
