"""Bootstrap intervals that resample what is independent: whole files, not rows.

The rows of an eval set are not independent: a held-out file gives many of them (a dozen triggers
a session, several sessions a file), and a model that does well on one file does well on its rows
together. Resampling rows as if independent makes an interval too narrow by about the square root
of the rows per file; resampling whole files (a cluster bootstrap) keeps the correlation in.

Every figure here is a ratio of sums over the rows — a mean (the denominator counts rows), or a
rate such as line hits over the proposals' lines — and a paired comparison is the difference of
two such ratios on the same rows, each resample drawing the same files for both models.
"""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_RESAMPLES = 2_000


def clustered(numerator: Sequence[float], denominator: Sequence[float] | None, clusters: Sequence[str],
              confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """(sum(numerator) / sum(denominator), low, high): a percentile bootstrap that draws whole
    clusters with replacement. `denominator` None: one per row (a mean)."""
    return difference(numerator, denominator, None, None, clusters, confidence, resamples, seed)


def difference(a: Sequence[float], a_weights: Sequence[float] | None, b: Sequence[float] | None,
               b_weights: Sequence[float] | None, clusters: Sequence[str], confidence: float = 0.95,
               resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """(ratio of a − ratio of b, low, high), each ratio sum(values) / sum(weights) over the same
    rows (weights None: one per row; b None: 0), the clusters drawn alike for both."""
    import numpy as np

    n = len(clusters)
    columns = [np.asarray(a, dtype=float), _weights(a_weights, n)]
    if b is not None:
        columns += [np.asarray(b, dtype=float), _weights(b_weights, n)]
    if not n or any(len(c) != n for c in columns):
        raise ValueError(f"an interval needs the same, non-zero number of values, weights and clusters "
                         f"({[len(c) for c in columns]}, {n})")
    _, index = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    groups = int(index.max()) + 1
    sums = np.stack([np.bincount(index, c, groups) for c in columns])  # (columns, clusters)
    value = _statistic(sums.sum(axis=1)[:, None])[0]
    rng = np.random.default_rng(seed)
    stats = []
    chunk = max(1, 1_000_000 // groups)  # memory of a few MB whatever the number of clusters
    for done in range(0, resamples, chunk):
        picks = rng.integers(0, groups, (min(chunk, resamples - done), groups))
        stats.append(_statistic(sums[:, picks].sum(axis=2)))
    tail = (1 - confidence) / 2
    low, high = np.quantile(np.concatenate(stats), [tail, 1 - tail])
    return float(value), float(low), float(high)


def _weights(weights, n: int):
    import numpy as np

    return np.ones(n) if weights is None else np.asarray(weights, dtype=float)


def _statistic(sums):
    """Per resample (a column of `sums`): a's ratio, less b's where there is b."""
    import numpy as np

    def ratio(num, den):
        return np.divide(num, den, out=np.zeros(num.shape), where=den > 0)

    out = ratio(sums[0], sums[1])
    return out - ratio(sums[2], sums[3]) if len(sums) == 4 else out
