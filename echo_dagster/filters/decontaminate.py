"""Decontamination at training time: no training example whose target equals or nearly equals any
eval target, of any tenant, whatever order the partitions were filtered in.

The filters drop a training row that overlaps an eval row of its tenant seen before it
(`eval_overlap`); that cannot see an eval row filtered later, nor one of another tenant. This check
runs where a model is trained, against the whole eval set as it is then, with the filters'
definitions of equal (the same text once white space is normalized) and near (MinHash Jaccard of
3-token shingles ≥ `FilterSettings.near_duplicate_jaccard`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import duckdb
from datasketch import MinHashLSH

from echo_dagster.filters.pipeline import FilterSettings, minhash, normalized


@dataclass
class EvalTargets:
    exact: set
    near: MinHashLSH

    def overlaps(self, target: str, language: str) -> bool:
        return normalized(target) in self.exact or bool(self.near.query(minhash(target, language or "")))


def eval_targets(con: duckdb.DuckDBPyConnection, settings: FilterSettings = FilterSettings()) -> EvalTargets:
    """Every target of the eval set (view `eval_set`), of every tenant."""
    index = EvalTargets(set(), MinHashLSH(threshold=settings.near_duplicate_jaccard, num_perm=64))
    for n, (target, language) in enumerate(con.execute("SELECT target, language FROM eval_set").fetchall()):
        index.exact.add(normalized(target))
        index.near.insert(str(n), minhash(target, language or ""))
    return index


def target_digest(target: str) -> str:
    """A short digest of a target under the same definition of equal (white space normalized): what
    a checkpoint keeps of its training targets, for a later evaluation to leave out rows it has seen."""
    return hashlib.sha256(normalized(target).encode()).hexdigest()[:16]


def decontaminate(examples: list[dict], index: EvalTargets) -> tuple[list[dict], int]:
    """(the examples whose target overlaps no eval target, how many were removed)."""
    kept = [e for e in examples if not index.overlaps(e["target"], e.get("language") or "")]
    return kept, len(examples) - len(kept)
