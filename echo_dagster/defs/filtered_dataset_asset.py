from collections import Counter
from datetime import timedelta

import dagster as dg

from echo_dagster.defs.partitions import daily_partitions
from echo_dagster.defs.refined_targets_asset import refined_targets
from echo_dagster.defs.resources import OptOutList, Warehouse
from echo_dagster.filters.deidentify import PLACEHOLDERS
from echo_dagster.filters.partition import DEDUP_WINDOW_DAYS, FilterResult, filter_partition, leaks
from echo_dagster.filters.pipeline import REASONS
from echo_dagster.harvest.refine import REASONS as REFINE_REASONS

ACCOUNTING_CHECK = "accounting_check"
NO_PII_CHECK = "no_pii_check"
NO_DUPLICATES_CHECK = "no_duplicates_check"
NO_OPT_OUT_CHECK = "no_opt_out_check"


@dg.asset(
    partitions_def=daily_partitions,
    # Dedup and decontamination compare a day with the days before it, so a backfill filters the
    # days in order (raw_sessions and refined_targets of different days run at once).
    deps=[refined_targets, dg.AssetDep("filtered_dataset", partition_mapping=dg.TimeWindowPartitionMapping(
        start_offset=-1, end_offset=-1))],
    group_name="harvest",
    kinds={"duckdb", "python"},
    owners=["team:echo"],
    check_specs=[
        dg.AssetCheckSpec(ACCOUNTING_CHECK, asset="filtered_dataset", blocking=True,
                          description="rows in = kept + dropped, per reason"),
        dg.AssetCheckSpec(NO_PII_CHECK, asset="filtered_dataset", blocking=True,
                          description="every text (VARCHAR) column of the kept rows, read by detect-secrets' own "
                                      "line scan (default plugins and filters) and Presidio's e-mail, phone, card, "
                                      "IBAN, US SSN and IP recognizers, none of the redactor's filters or caches: "
                                      "no secret or PII left"),
        dg.AssetCheckSpec(NO_DUPLICATES_CHECK, asset="filtered_dataset", blocking=True,
                          description="no dedup key twice among training examples"),
        dg.AssetCheckSpec(NO_OPT_OUT_CHECK, asset="filtered_dataset", blocking=True,
                          description="no opted-out user or tenant among kept rows"),
    ],
)
def filtered_dataset(context: dg.AssetExecutionContext, warehouse: Warehouse, opt_out: OptOutList):
    """The day's refined targets through the filters (opt-out, syntax, de-identification, noise,
    dedup, decontamination): every row with its `split` and, when dropped, its `drop_reason`.
    Views: `training_examples` (kept train rows) and `eval_set` (kept eval rows)."""
    day = context.partition_time_window.start.date()
    listed = opt_out.load()
    users, tenants = listed.users, listed.tenants
    # The day, and the history its dedup and decontamination consult.
    with warehouse.connect(window=(day - timedelta(days=DEDUP_WINDOW_DAYS + 1), day)) as con:
        result = filter_partition(con, day, opted_out_users=users, opted_out_tenants=tenants)
        found = leaks(con, day)
        stored, in_rows = con.execute(
            "SELECT (SELECT count(*) FROM filtered_dataset WHERE partition_date = $d), "
            "(SELECT count(*) FROM refined_targets WHERE partition_date = $d)", {"d": day}).fetchone()
        repeated = con.execute("SELECT count(*) - count(DISTINCT dedup_key) FROM training_examples").fetchone()[0]
        kept_opted = con.execute(
            "SELECT count(*) FROM filtered_dataset WHERE partition_date = $d AND drop_reason IS NULL "
            "AND (list_contains($users, user_id) OR list_contains($tenants, tenant_id))",
            {"d": day, "users": sorted(users), "tenants": sorted(tenants)}).fetchone()[0]
    yield dg.MaterializeResult(metadata=_metadata(result, stored))
    accounted = result.kept_train + result.kept_eval + sum(result.dropped.values())
    yield dg.AssetCheckResult(check_name=ACCOUNTING_CHECK, passed=in_rows == stored == accounted,
                              description=f"{in_rows} refined rows, {stored} stored, {accounted} kept or dropped")
    where = Counter(f"{leak.column}/{leak.entity}" for leak in found)
    listed = ", ".join(f"{k} {n}" for k, n in where.most_common())
    yield dg.AssetCheckResult(check_name=NO_PII_CHECK, passed=not found,
                              description=f"{len(found)} findings in kept rows" + (f": {listed}" if found else ""),
                              metadata={"found": len(found), **{f"found/{k}": n for k, n in where.items()}})
    yield dg.AssetCheckResult(check_name=NO_DUPLICATES_CHECK, passed=repeated == 0,
                              description=f"{repeated} repeated dedup keys among training examples")
    yield dg.AssetCheckResult(check_name=NO_OPT_OUT_CHECK, passed=kept_opted == 0,
                              description=f"{kept_opted} kept rows of opted-out users or tenants")


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
