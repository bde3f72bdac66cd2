import dagster as dg
from pydantic import Field

from echo_dagster.defs.partitions import daily_partitions
from echo_dagster.defs.raw_sessions_asset import raw_sessions
from echo_dagster.defs.resources import Warehouse
from echo_dagster.harvest.partition import completions_shown, refine_partition
from echo_dagster.harvest.refine import REASONS, RefineSettings

ACCOUNTING_CHECK = "accounting_check"
SOURCE_KINDS = ("accepted_unchanged", "accepted_edited", "partially_accepted", "rejected_rewritten")


class RefinedTargetsConfig(dg.Config):
    max_lines: int = Field(default=RefineSettings.max_lines, description="The most lines a target keeps (the block rule cuts it shorter where its block ends).")


@dg.asset(
    partitions_def=daily_partitions,
    deps=[raw_sessions],
    group_name="harvest",
    kinds={"duckdb", "python"},
    owners=["team:echo"],
    check_specs=[dg.AssetCheckSpec(ACCOUNTING_CHECK, asset="refined_targets", blocking=True,
                                   description="one row per completion shown, with a target or a reason")],
)
def refined_targets(context: dg.AssetExecutionContext, config: RefinedTargetsConfig, warehouse: Warehouse):
    """What users finally kept at each completion of the day: the region at the completion's place
    in the last snapshot, carried through every snapshot in between and cut to a syntactic unit, as
    (prefix, suffix, target) of the final document with provenance, ES(proposal, target) and the
    share of the accepted text that survived. A completion without a usable final state keeps a row
    with its reason. DuckDB table `refined_targets`."""
    day = context.partition_time_window.start.date()
    with warehouse.connect(window=(day, day)) as con:
        result = refine_partition(con, day, RefineSettings(max_lines=config.max_lines))
        shown = completions_shown(con, day)
    metadata = {
        "dagster/row_count": result.completions,
        "completions": result.completions,
        "with_target": result.with_target,
        "mean_es": dg.MetadataValue.float(result.mean_es if result.mean_es is not None else float("nan")),
    }
    metadata |= {f"reason/{r}": result.by_reason.get(r, 0) for r in REASONS}
    metadata |= {f"source_kind/{k}": result.by_source_kind.get(k, 0) for k in SOURCE_KINDS}
    yield dg.MaterializeResult(metadata=metadata)
    yield dg.AssetCheckResult(
        check_name=ACCOUNTING_CHECK, passed=result.completions == shown,
        description=f"{shown} completions shown, {result.completions} rows "
                    f"({result.with_target} with a target, {result.completions - result.with_target} with a reason)",
        metadata={"shown": shown, "rows": result.completions},
    )
