"""Scores of a model's proposals on held-out completions, with intervals that resample whole files.

A held-out completion is a kept row of the eval set: the prompt is its (prefix, suffix), the truth
its target — what the user finally kept there, cut by the block rule (docs/design.md#the-judge).
Each row is scored on:

* acceptance — the simulated developer's rule (`metrics.simulated_accept`: ES against as many
  lines of the truth as the proposal has ≥ τ). It rewards proposing less; it is reported, and the
  gate only asks that it not fall;
* kept characters per request — of the proposal's longest run of first lines that would be
  accepted, the characters that match the truth up to their first difference (`metrics.kept_chars`):
  what the gate decides on, and what cutting a proposal shorter cannot raise;
* exact match and edit similarity against the whole truth, and against its first k lines (k the
  proposal's, the paper's prefix-cut versions, `*_prefix`); line precision and recall;
* the generation rate (characters of accepted proposals standing in the truth / the truths').

Every interval is a cluster bootstrap over the rows' files (`intervals`): rows of one file are
not independent. Each summary says how many rows, files and sessions stand behind it.
"""

from __future__ import annotations

from dataclasses import dataclass

from echo_dagster.evaluation import intervals
from echo_dagster.filters.pipeline import FilterSettings, dedup_key
from echo_dagster.metrics import (
    DEFAULT_TAU,
    edit_similarity,
    exact_match,
    first_lines,
    kept_chars,
    line_matches,
    simulated_accept,
    surviving_chars,
)
from echo_dagster.training.window import ALL_TENANTS

# name: (numerator, denominator or None for a mean per row) — each a ratio of sums over the rows.
METRICS = {
    "acceptance": ("accepted", None),
    "kept_chars": ("kept", None),
    "exact_match": ("exact", None),
    "edit_similarity": ("es", None),
    "exact_match_prefix": ("exact_prefix", None),
    "edit_similarity_prefix": ("es_prefix", None),
    "line_precision": ("line_hits", "proposal_lines"),
    "line_recall": ("line_hits", "truth_lines"),
    "generation_rate": ("surviving", "truth_chars"),
    "proposal_chars": ("proposal_chars", None),
}


@dataclass(frozen=True)
class Scored:
    completion_id: str
    language: str
    source_kind: str
    file: str  # the cluster an interval resamples: the row's repository and path
    session: str
    accepted: int
    kept: int  # characters of the proposal kept (metrics.kept_chars)
    exact: int  # against the whole truth
    es: float
    exact_prefix: int  # against the truth's first k lines, k the proposal's
    es_prefix: float
    line_hits: int
    proposal_lines: int
    truth_lines: int
    surviving: int  # characters of the proposal standing in the truth, when accepted
    truth_chars: int
    proposal_chars: int
    # What was scored, kept so that a score can be recomputed (or a new one computed) without generating.
    target: str = ""
    proposal: str = ""


def score(rows: list[dict], proposals: list[str], tau: float = DEFAULT_TAU) -> list[Scored]:
    """`rows`: dicts with completion_id, language, source_kind and target (and repo, path and
    session_id where known: a row without them is a cluster of its own); `proposals` in the same order."""
    out = []
    for row, proposal in zip(rows, proposals, strict=True):
        truth = row["target"]
        accepted = simulated_accept(proposal, truth, tau)
        compared = first_lines(truth, max(1, len(proposal.splitlines())))
        hits, mine, theirs = line_matches(proposal, truth)
        file = f"{row['repo']}/{row['path']}" if row.get("path") else row["completion_id"]
        out.append(Scored(row["completion_id"], row["language"] or "", row["source_kind"] or "", file,
                          row.get("session_id") or file, int(accepted), kept_chars(proposal, truth, tau),
                          int(exact_match(proposal, truth)), edit_similarity(proposal.rstrip("\n"), truth.rstrip("\n")),
                          int(exact_match(proposal, compared)), edit_similarity(proposal.rstrip("\n"), compared),
                          hits, mine, theirs, surviving_chars(proposal, truth) if accepted else 0, len(truth),
                          len(proposal), truth, proposal))
    return out


def held_out_rows(con, limit: int, seed: int = 0, tenants: tuple[str, dict] = ALL_TENANTS) -> list[dict]:
    """Rows of the eval set (view `eval_set`), at most `limit`: a stable pseudo-random sample, of the
    tenants `tenants` (`training.window.tenant_filter`) selects, one row of each (file, prefix tail,
    target) among them — `eval_set` keeps one per tenant (a tenant's events never suppress
    another's), and rows of two tenants on the same file and place would count one completion twice."""
    names = ("completion_id", "language", "source_kind", "prefix", "suffix", "target", "repo", "path", "session_id")
    where, params = tenants
    context = FilterSettings().context_chars
    # The sample is drawn on the keys alone (a prefix tail, not the whole prefix, of every row).
    found = con.execute(f"SELECT completion_id, repo, path, right(prefix, {int(context)}), target FROM eval_set "
                        f"WHERE {where} ORDER BY hash(completion_id || '{int(seed)}')", params).fetchall()
    seen, chosen = set(), []
    for completion_id, repo, path, tail, target in found:
        key = dedup_key("", tail or "", target, context, (repo, path))  # no tenant: across those selected
        if key not in seen:
            seen.add(key)
            chosen.append(completion_id)
        if len(chosen) == limit:
            break
    rows = {r[0]: dict(zip(names, r)) for r in con.execute(
        f"SELECT {', '.join(names)} FROM eval_set WHERE completion_id IN (SELECT unnest($ids))",
        {"ids": chosen}).fetchall()}
    return [rows[c] for c in chosen]


def evaluate(propose, rows: list[dict], tau: float = DEFAULT_TAU) -> list[Scored]:
    """Proposals for held-out rows (prefix, suffix, language, target, ...), scored. `propose` takes
    CompletionRequests, as a model serving them does (`model.generation.complete`)."""
    from echo_dagster.completion import CompletionRequest

    return score(rows, propose([CompletionRequest(r["prefix"], r["suffix"] or "", r["language"] or "")
                                for r in rows]), tau)


def _column(results: list[Scored], name: str | None) -> list[float] | None:
    return None if name is None else [getattr(r, name) for r in results]


def _counts(results: list[Scored]) -> dict:
    return {"n": len(results), "files": len({r.file for r in results}), "sessions": len({r.session for r in results})}


def summarize(results: list[Scored], resamples: int = intervals.DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """Each metric of METRICS with its 95% interval resampling files: {"acceptance": (value, low,
    high), ..., "n": rows, "files": ..., "sessions": ...}."""
    if not results:
        return {"n": 0, "files": 0, "sessions": 0}
    files = [r.file for r in results]
    return _counts(results) | {
        metric: intervals.clustered(_column(results, num), _column(results, den), files, resamples=resamples, seed=seed)
        for metric, (num, den) in METRICS.items()}


def by_group(results: list[Scored], key: str, **kwargs) -> dict[str, dict]:
    """summarize() per language or per source kind."""
    groups: dict[str, list[Scored]] = {}
    for r in results:
        groups.setdefault(getattr(r, key), []).append(r)
    return {name: summarize(members, **kwargs) for name, members in sorted(groups.items())}


def paired(a: list[Scored], b: list[Scored], resamples: int = intervals.DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """Each metric of `a` minus `b`, scored on the same rows, with its 95% paired interval (the
    same files drawn for both, so the interval is that of the difference itself):
    {"acceptance": (difference, low, high), ..., "n", "files", "sessions"}."""
    if [r.completion_id for r in a] != [r.completion_id for r in b] or not a:
        raise ValueError("paired scores need the same, non-empty rows in the same order")
    files = [r.file for r in a]
    return _counts(a) | {
        metric: intervals.difference(_column(a, num), _column(a, den), _column(b, num), _column(b, den), files,
                                     resamples=resamples, seed=seed)
        for metric, (num, den) in METRICS.items()}
