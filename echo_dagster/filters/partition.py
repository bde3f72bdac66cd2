"""Build one daily partition of `filtered_dataset` from `refined_targets`.

Every refined row lands in `filtered_dataset` with its `split` and, when it does not go further,
its `drop_reason`: the training examples are the kept train rows (view `training_examples`), the
eval set the kept eval rows (view `eval_set`). Dedup and decontamination look at earlier
partitions only, so a partition's result does not depend on when later ones ran.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import date, timedelta

import duckdb
import pyarrow as pa

from echo_dagster import schema, warehouse
from echo_dagster.filters.pipeline import FilterSettings, FilterState, filter_row, minhash
from echo_dagster.harvest.refine import split_document
from echo_dagster.optout import OptOut

DEDUP_WINDOW_DAYS = 30  # how far back a new example is compared with kept ones

_SCHEMA = schema.arrow_schema(schema.FILTERED_COLUMNS)


@dataclass(frozen=True)
class FilterResult:
    rows_in: int
    kept_train: int
    kept_eval: int
    dropped: dict[str, int] = field(default_factory=dict)
    pii_found: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # per filter


def filter_partition(con: duckdb.DuckDBPyConnection, day: date, listed: OptOut = OptOut(), *,
                     settings: FilterSettings = FilterSettings(),
                     dedup_window_days: int = DEDUP_WINDOW_DAYS, batch_rows: int = 1_000) -> FilterResult:
    state = FilterState(listed.users, listed.tenants, settings=settings)
    earlier = con.execute(
        "SELECT tenant_id, dedup_key, target, split, language FROM filtered_dataset WHERE drop_reason IS NULL "
        "AND partition_date < $day AND (split = 'eval' OR partition_date >= $since)",
        {"day": day, "since": day - timedelta(days=dedup_window_days)},
    ).fetchall()
    for tenant, key, target, split, language in earlier:
        state.remember(tenant, key, target, split, minhash(target, language or ""))
    # A cursor of its own streams the day's rows while `con` writes.
    rows = con.cursor().sql(
        "SELECT * EXCLUDE (partition_date, shown_ts) FROM refined_targets "
        "WHERE partition_date = $day ORDER BY shown_ts, completion_id",
        params={"day": day},
    )
    dropped, kept, rows_in = Counter(), Counter(), 0
    documents = _Documents(con.cursor(), day)
    with warehouse.replacing_partition(con, day, "filtered_dataset"):
        for chunk in rows.to_arrow_reader(batch_rows):
            out = [filter_row(row, state) for row in documents.split(chunk.to_pylist(), state.opted_out)]
            rows_in += len(out)
            dropped.update(r["drop_reason"] for r in out if r["drop_reason"])
            kept.update(r["split"] for r in out if not r["drop_reason"])
            batch = pa.Table.from_pylist([{n: r.get(n) for n in _SCHEMA.names} for r in out], schema=_SCHEMA)
            con.register("batch", batch)
            con.execute("INSERT INTO filtered_dataset SELECT $day, * FROM batch", {"day": day})
            con.unregister("batch")
    return FilterResult(rows_in, kept["train"], kept["eval"], dict(sorted(dropped.items())),
                        dict(sorted(state.pii_found.items())),
                        {step: round(t, 3) for step, t in sorted(state.clock.seconds.items())})


class _Documents:
    """The final documents of the day's rows, fetched a batch of rows at a time, the latest kept."""

    def __init__(self, con: duckdb.DuckDBPyConnection, day: date, kept: int = 4_096):
        self.con, self.day, self.kept = con, day, kept
        self.cache: OrderedDict[str, str] = OrderedDict()

    def split(self, rows: list[dict], opted_out) -> list[dict]:
        """The rows with prefix' and suffix' from their documents; the documents of opted-out users'
        rows are not read."""
        wanted = [r for r in rows if r["document_id"] and not opted_out(r)]
        missing = list({r["document_id"] for r in wanted if r["document_id"] not in self.cache})
        if missing:
            self.cache.update(self.con.execute(
                "SELECT document_id, document FROM final_documents WHERE partition_date = $day "
                "AND list_contains($ids, document_id)", {"day": self.day, "ids": missing}).fetchall())
        for row in rows:
            row["prefix"] = row["suffix"] = None
        for row in wanted:
            self.cache.move_to_end(row["document_id"])
            row["prefix"], row["suffix"] = split_document(row | {"document": self.cache[row["document_id"]]})
        while len(self.cache) > self.kept:
            self.cache.popitem(last=False)
        return rows
