"""Decontamination at training time: no training example whose target equals or nearly equals any
eval target, of any tenant, whatever order the partitions were filtered in.

The filters drop a training row that overlaps an eval row of its tenant seen before it
(`eval_overlap`); that cannot see an eval row filtered later, nor one of another tenant. This check
runs where a model is trained, against the whole eval set as it is then, with the filters'
definitions of equal (the same text once white space is normalized) and near (Jaccard similarity of
their 3-token shingles ≥ `FilterSettings.near_duplicate_jaccard`) — the similarity itself, not the
MinHash estimate the filters' dedup uses, which missed 5 near pairs of the experiment's data. Exact
and fast through prefix filtering (Bayardo et al., 2007): two sets with Jaccard ≥ t share a shingle
among the first |s| − ⌈t·|s|⌉ + 1 of each, in one global order (the eval set's rarest first).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from dataclasses import dataclass

import duckdb

from echo_dagster.filters.pipeline import FilterSettings, normalized, shingles


@dataclass
class EvalTargets:
    exact: set[str]
    sets: list[frozenset[str]]
    frequency: Counter  # shingle -> eval targets holding it: the global order, rarest first
    by_prefix: dict[str, list[int]]  # shingle -> the eval targets holding it in their prefix
    threshold: float

    def _prefix(self, shingles_: frozenset[str]) -> list[str]:
        ordered = sorted(shingles_, key=lambda s: (self.frequency[s], s))
        return ordered[: len(ordered) - math.ceil(self.threshold * len(ordered) - 1e-9) + 1]

    def overlaps(self, target: str, language: str) -> bool:
        if normalized(target) in self.exact:
            return True
        mine = frozenset(shingles(target, language))
        candidates = {n for s in self._prefix(mine) for n in self.by_prefix.get(s, ())}
        return any(len(mine & self.sets[n]) >= self.threshold * len(mine | self.sets[n]) - 1e-9 for n in candidates)


def eval_targets(con: duckdb.DuckDBPyConnection, settings: FilterSettings = FilterSettings()) -> EvalTargets:
    """Every target of the eval set (view `eval_set`), of every tenant."""
    rows = con.execute("SELECT target, language FROM eval_set").fetchall()
    sets = [frozenset(shingles(target, language or "")) for target, language in rows]
    index = EvalTargets({normalized(target) for target, _ in rows}, sets, Counter(s for one in sets for s in one),
                        defaultdict(list), settings.near_duplicate_jaccard)
    for n, one in enumerate(sets):
        for s in index._prefix(one):
            index.by_prefix[s].append(n)
    return index


def target_digest(target: str) -> str:
    """A short digest of a target under the same definition of equal (white space normalized): what
    a checkpoint keeps of its training targets, for a later evaluation to leave out rows it has seen."""
    return hashlib.sha256(normalized(target).encode()).hexdigest()[:16]


def decontaminate(examples: list[dict], index: EvalTargets) -> tuple[list[dict], int]:
    """(the examples whose target — and rejected text, for a preference pair — overlaps no eval target,
    how many were removed). A rejected text is checked too: a pair teaches the model that text as
    much as its target, away from it rather than towards it."""
    kept = [e for e in examples if not any(index.overlaps(e[key], e.get("language") or "")
                                           for key in ("target", "rejected") if e.get(key))]
    return kept, len(examples) - len(kept)
