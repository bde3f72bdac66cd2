"""Which training examples a checkpoint is trained on: a window of `filtered_dataset` partitions,
capped, with an optional replay of older examples."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date

import duckdb

from echo_dagster.training.examples import data_hash

_NAMES = ("completion_id", "partition_date", "repo", "path", "prefix", "suffix", "target", "language")
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

    @property
    def hash(self) -> str:
        return data_hash([(e["completion_id"], e["target"]) for e in self.examples])


def training_rows_after(con: duckdb.DuckDBPyConnection, cutoff: date | None) -> tuple[int, date | None]:
    """(training examples in partitions after `cutoff`, the newest such partition)."""
    return con.execute("SELECT count(*), max(partition_date) FROM training_examples "
                       "WHERE $cutoff IS NULL OR partition_date > $cutoff", {"cutoff": cutoff}).fetchone()


def load(con: duckdb.DuckDBPyConnection, window: Window) -> TrainingData:
    days = [d for d, in con.execute("SELECT DISTINCT partition_date FROM training_examples ORDER BY 1").fetchall()]
    if not days:
        return TrainingData([], None)
    first = days[-window.days] if window.days and window.days < len(days) else days[0]
    # A stable pseudo-random order (a hash of the id and the seed), so that a cap keeps the same rows.
    order = f"hash(completion_id || '{int(window.seed)}')"
    limit = f"LIMIT {int(window.max_examples)}" if window.max_examples else ""
    rows = con.execute(f"SELECT {_FIELDS} FROM training_examples WHERE partition_date >= $first "
                       f"ORDER BY {order} {limit}", {"first": first}).fetchall()
    examples = [dict(zip(_NAMES, r)) for r in rows]
    replayed = []
    if window.replay_share and first > days[0]:
        want = int(len(examples) * window.replay_share)
        replayed = con.execute(f"SELECT {_FIELDS} FROM training_examples WHERE partition_date < $first "
                               f"ORDER BY {order} LIMIT {want}", {"first": first}).fetchall()
        examples += [dict(zip(_NAMES, r)) for r in replayed]
    counts = Counter(e["partition_date"].isoformat() for e in examples)
    return TrainingData(examples, days[-1], dict(sorted(counts.items())), len(replayed))
