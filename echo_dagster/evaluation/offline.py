"""Scores of a model's proposals on held-out completions, with bootstrap confidence intervals.

A held-out completion is a kept row of the eval set: the prompt is its (prefix, suffix), the truth
its target — what the user finally kept there. The metrics are DESIGN.md's: simulated acceptance
(ES of the proposal against as many lines of the truth ≥ τ), generation rate (characters of
accepted proposals that stand in the truth / characters of the truths), exact match, ES.
"""

from __future__ import annotations

from dataclasses import dataclass

from echo_dagster.metrics import (
    DEFAULT_TAU,
    edit_similarity,
    exact_match,
    first_lines,
    simulated_accept,
    surviving_chars,
)
from echo_dagster.training.window import ALL_TENANTS


@dataclass(frozen=True)
class Scored:
    completion_id: str
    language: str
    source_kind: str
    accepted: int
    exact: int
    es: float
    surviving: int  # characters of the proposal standing in the truth, when accepted
    truth_chars: int


def score(rows: list[dict], proposals: list[str], tau: float = DEFAULT_TAU) -> list[Scored]:
    """`rows`: dicts with completion_id, language, source_kind and target; `proposals` in the same order."""
    out = []
    for row, proposal in zip(rows, proposals, strict=True):
        truth = row["target"]
        accepted = simulated_accept(proposal, truth, tau)
        compared = first_lines(truth, max(1, len(proposal.splitlines())))
        out.append(Scored(row["completion_id"], row["language"] or "", row["source_kind"] or "", int(accepted),
                          int(exact_match(proposal, compared)), edit_similarity(proposal.rstrip("\n"), compared),
                          surviving_chars(proposal, truth) if accepted else 0, len(truth)))
    return out


def held_out_rows(con, limit: int, seed: int = 0, tenants: tuple[str, dict] = ALL_TENANTS) -> list[dict]:
    """Rows of the eval set (view `eval_set`), at most `limit`: a stable pseudo-random sample, of the
    tenants `tenants` (`training.window.tenant_filter`) selects."""
    names = ("completion_id", "language", "source_kind", "prefix", "suffix", "target")
    where, params = tenants
    rows = con.execute(f"SELECT {', '.join(names)} FROM eval_set WHERE {where} "
                       f"ORDER BY hash(completion_id || '{int(seed)}') LIMIT {int(limit)}", params).fetchall()
    return [dict(zip(names, r)) for r in rows]


def evaluate(propose, rows: list[dict], tau: float = DEFAULT_TAU) -> list[Scored]:
    """Proposals for held-out rows (prefix, suffix, language, target, ...), scored. `propose` takes
    CompletionRequests, as a model serving them does (`model.generation.complete`)."""
    from echo_dagster.completion import CompletionRequest

    return score(rows, propose([CompletionRequest(r["prefix"], r["suffix"] or "", r["language"] or "")
                                for r in rows]), tau)


def summarize(results: list[Scored], resamples: int = 1_000, seed: int = 0) -> dict:
    """Each metric with its 95% bootstrap interval: {"acceptance": (value, low, high), ...}."""
    import numpy as np

    if not results:
        return {"n": 0}
    columns = {name: np.array([getattr(r, name) for r in results], dtype=float)
               for name in ("accepted", "exact", "es", "surviving", "truth_chars")}
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(results), (resamples, len(results)))

    def with_interval(values, resampled) -> tuple[float, float, float]:
        low, high = np.quantile(resampled, [0.025, 0.975])
        return float(values), float(low), float(high)

    out = {"n": len(results)}
    for metric, column in (("acceptance", "accepted"), ("exact_match", "exact"), ("edit_similarity", "es")):
        out[metric] = with_interval(columns[column].mean(), columns[column][picks].mean(axis=1))
    # A ratio of sums: resample completions, then divide.
    out["generation_rate"] = with_interval(columns["surviving"].sum() / columns["truth_chars"].sum(),
                                           columns["surviving"][picks].sum(axis=1)
                                           / columns["truth_chars"][picks].sum(axis=1))
    return out


def by_group(results: list[Scored], key: str, **kwargs) -> dict[str, dict]:
    """summarize() per language or per source kind."""
    groups: dict[str, list[Scored]] = {}
    for r in results:
        groups.setdefault(getattr(r, key), []).append(r)
    return {name: summarize(members, **kwargs) for name, members in sorted(groups.items())}


def paired(a: list[Scored], b: list[Scored], resamples: int = 1_000, seed: int = 0) -> dict:
    """Each metric of `a` minus `b`, scored on the same rows, with its 95% paired bootstrap interval
    (the rows are resampled, so the interval is that of the difference itself):
    {"acceptance": (difference, low, high), ...}."""
    import numpy as np

    if [r.completion_id for r in a] != [r.completion_id for r in b] or not a:
        raise ValueError("paired scores need the same, non-empty rows in the same order")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(a), (resamples, len(a)))

    def column(results, name):
        return np.array([getattr(r, name) for r in results], dtype=float)

    truth = column(a, "truth_chars")
    out = {}
    for metric, name in (("acceptance", "accepted"), ("exact_match", "exact"), ("edit_similarity", "es")):
        diff = column(a, name) - column(b, name)
        low, high = np.quantile(diff[picks].mean(axis=1), [0.025, 0.975])
        out[metric] = (float(diff.mean()), float(low), float(high))
    surviving = column(a, "surviving") - column(b, "surviving")
    low, high = np.quantile(surviving[picks].sum(axis=1) / truth[picks].sum(axis=1), [0.025, 0.975])
    out["generation_rate"] = (float(surviving.sum() / truth.sum()), float(low), float(high))
    return out
