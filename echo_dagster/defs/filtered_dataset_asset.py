from datetime import timedelta

import dagster as dg

from echo_dagster.defs.partitions import daily_partitions
from echo_dagster.defs.refined_targets_asset import refined_targets
from echo_dagster.defs.resources import OptOutList, Warehouse
from echo_dagster.filters import checks
from echo_dagster.filters.deidentify import PLACEHOLDERS
from echo_dagster.filters.partition import DEDUP_WINDOW_DAYS, FilterResult, filter_partition
from echo_dagster.filters.pipeline import REASONS
from echo_dagster.harvest.refine import REASONS as REFINE_REASONS


@dg.asset(
    partitions_def=daily_partitions,
    # Dedup and decontamination compare a day with the days before it, so a backfill filters the
    # days in order (raw_sessions and refined_targets of different days run at once).
    deps=[refined_targets, dg.AssetDep("filtered_dataset", partition_mapping=dg.TimeWindowPartitionMapping(
        start_offset=-1, end_offset=-1))],
    group_name="harvest",
    kinds={"duckdb", "python"},
    owners=["team:echo"],
    check_specs=[dg.AssetCheckSpec(name, asset="filtered_dataset", blocking=True, description=description)
                 for name, description in checks.DESCRIPTIONS.items()],
)
def filtered_dataset(context: dg.AssetExecutionContext, warehouse: Warehouse, opt_out: OptOutList):
    """The day's refined targets through the filters (opt-out, syntax, de-identification, noise,
    dedup, decontamination): every row with its `split` and, when dropped, its `drop_reason`.
    Views: `training_examples` (kept train rows) and `eval_set` (kept eval rows)."""
    day = context.partition_time_window.start.date()
    listed = opt_out.load()
    # The day, and the history its dedup and decontamination consult.
    with warehouse.connect(window=(day - timedelta(days=DEDUP_WINDOW_DAYS + 1), day)) as con:
        result = filter_partition(con, day, listed)
        outcomes = checks.partition_checks(con, day, result, listed)
    stored = next(c.metadata["stored"] for c in outcomes if c.name == "accounting_check")
    yield dg.MaterializeResult(metadata=_metadata(result, stored))
    for check in outcomes:
        yield dg.AssetCheckResult(check_name=check.name, passed=check.passed, description=check.description,
                                  metadata=check.metadata)


# The filters' steps, timed (filters.pipeline's laps).
STEPS = ("opt_out", "syntax", "deidentify", "noise", "dedup", "decontamination")


def _metadata(result: FilterResult, stored: int) -> dict:
    """The same numeric keys every day, zeros included, so that the UI plots each across partitions
    without gaps. `dagster/row_count`: the partition's rows in table filtered_dataset (kept and
    dropped)."""
    metadata = {"dagster/row_count": stored, "rows_in": result.rows_in, "kept_train": result.kept_train,
                "kept_eval": result.kept_eval, "dropped": sum(result.dropped.values())}
    # The filters' reasons, then a refined row's own (a completion without a target).
    reasons = REASONS + tuple(r for r in REFINE_REASONS if r not in REASONS)
    metadata |= {f"dropped/{r}": result.dropped.get(r, 0) for r in reasons}
    metadata |= {f"dropped/{r}": n for r, n in result.dropped.items() if r not in reasons}  # a reason added later
    metadata |= {f"pii/{e}": result.pii_found.get(e, 0) for e in PLACEHOLDERS}
    metadata |= {f"pii/{e}": n for e, n in result.pii_found.items() if e not in PLACEHOLDERS}
    metadata |= {f"seconds/{s}": result.seconds.get(s, 0.0) for s in STEPS}
    metadata |= {f"seconds/{s}": t for s, t in result.seconds.items() if s not in STEPS}
    return metadata
