"""Which training examples a checkpoint is trained on: a window of `filtered_dataset` partitions,
capped, with an optional replay of older examples — none whose target equals or nearly equals an
eval target of any tenant (`filters.decontaminate`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date

import duckdb

from echo_dagster.filters.decontaminate import decontaminate, eval_targets
from echo_dagster.tenancy import TenantPolicy
from echo_dagster.training.examples import data_hash

_NAMES = ("completion_id", "partition_date", "tenant_id", "repo", "path", "prefix", "suffix", "target", "language")
_FIELDS = ", ".join(_NAMES)


@dataclass(frozen=True)
class Window:
    days: int = 0  # the last N partitions that hold training examples; 0: all of them
    max_examples: int = 0  # 0: no cap
    replay_share: float = 0.0  # older examples added, as a share of the window's
    seed: int = 0


@dataclass
class TrainingData:
    examples: list[dict]
    cutoff: date | None  # the newest partition trained on
    rows_per_partition: dict[str, int] = field(default_factory=dict)
    replayed: int = 0
    decontaminated: int = 0  # examples left out: their target overlaps an eval target

    @property
    def rows_per_tenant(self) -> dict[str, int]:
        return dict(sorted(Counter(e["tenant_id"] for e in self.examples).items()))

    @property
    def hash(self) -> str:
        return data_hash([(e["completion_id"], e["target"]) for e in self.examples])


def tenant_filter(policy: TenantPolicy, tenant: str | None) -> tuple[str, dict]:
    """A SQL condition on `tenant_id` and its parameters: the rows of the pooled model (tenants whose
    policy is `pooled`), or of `tenant`'s own model (its policy must be `own`)."""
    if tenant is not None:
        if policy.of(tenant) != "own":
            raise ValueError(f"tenant {tenant!r} has policy {policy.of(tenant)!r}: only a tenant whose policy is "
                             "'own' has a model of its own (echo-dagster tenant <id> own)")
        return "tenant_id = $scope_tenant", {"scope_tenant": tenant}
    if policy.default == "pooled":
        others = [t for t, p in policy.tenants.items() if p != "pooled"]
        return "NOT list_contains($scope_others, tenant_id)", {"scope_others": others}
    pooled = [t for t, p in policy.tenants.items() if p == "pooled"]
    return "list_contains($scope_pooled, tenant_id)", {"scope_pooled": pooled}


ALL_TENANTS = ("TRUE", {})  # no tenant filter (the experiment, tests)


def training_rows_after(con: duckdb.DuckDBPyConnection, cutoff: date | None,
                        tenants: tuple[str, dict] = ALL_TENANTS) -> tuple[int, date | None]:
    """(training examples in partitions after `cutoff`, the newest such partition), of the tenants
    `tenants` (`tenant_filter`) selects."""
    where, params = tenants
    return con.execute(f"SELECT count(*), max(partition_date) FROM training_examples "
                       f"WHERE ($cutoff IS NULL OR partition_date > $cutoff) AND {where}",
                       {"cutoff": cutoff, **params}).fetchone()


def load(con: duckdb.DuckDBPyConnection, window: Window, tenants: tuple[str, dict] = ALL_TENANTS) -> TrainingData:
    """The window's examples, of the tenants `tenants` (`tenant_filter`) selects."""
    where, params = tenants
    days = [d for d, in con.execute(f"SELECT DISTINCT partition_date FROM training_examples WHERE {where} "
                                    f"ORDER BY 1", params).fetchall()]
    if not days:
        return TrainingData([], None)
    first = days[-window.days] if window.days and window.days < len(days) else days[0]
    # A stable pseudo-random order (a hash of the id and the seed), so that a cap keeps the same rows.
    order = f"hash(completion_id || '{int(window.seed)}')"
    index = eval_targets(con)
    rows = con.execute(f"SELECT {_FIELDS} FROM training_examples WHERE partition_date >= $first AND {where} "
                       f"ORDER BY {order}", {"first": first, **params}).fetchall()
    # Decontaminated before the cap, so that a cap keeps as many examples as it says.
    examples, removed = decontaminate([dict(zip(_NAMES, r)) for r in rows], index)
    examples = examples[: window.max_examples or None]
    replayed = []
    if window.replay_share and first > days[0]:
        want = int(len(examples) * window.replay_share)
        older = con.execute(f"SELECT {_FIELDS} FROM training_examples WHERE partition_date < $first AND {where} "
                            f"ORDER BY {order}", {"first": first, **params}).fetchall()
        replayed, removed_older = decontaminate([dict(zip(_NAMES, r)) for r in older], index)
        replayed = replayed[:want]
        removed += removed_older
        examples += replayed
    counts = Counter(e["partition_date"].isoformat() for e in examples)
    return TrainingData(examples, days[-1], dict(sorted(counts.items())), len(replayed), removed)
