"""The promotion gate: a challenger serves only if it wins on held-out experience and forgets little.

The acceptance comparison is paired: both models are scored on the same held-out completions, and
the bootstrap resamples those completions, so the interval is that of the difference itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GateSettings:
    min_acceptance_gain: float = 0.0  # points of acceptance rate the challenger must gain (0.02 = 2 points)
    max_humaneval_drop: float = 0.02  # of pass@1
    max_stdlib_es_drop: float = 0.02  # of the mean edit similarity on standard-library lines (evaluation.forgetting)
    confidence: float = 0.95
    resamples: int = 2_000
    seed: int = 0


@dataclass(frozen=True)
class Scores:
    """A model's results on the held-out completions (one 0/1 per completion, in a shared order)
    and on the forgetting guard."""

    accepted: list[int]
    humaneval_pass_at_1: float | None = None
    stdlib_es: list[float] | None = None  # per line of the forgetting guard, in a shared order

    @property
    def acceptance(self) -> float:
        return sum(self.accepted) / len(self.accepted) if self.accepted else 0.0


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reasons: list[str]
    figures: dict = field(default_factory=dict)


def paired_difference_interval(a: list[float], b: list[float], confidence: float = 0.95, resamples: int = 2_000,
                               seed: int = 0) -> tuple[float, float, float]:
    """(mean of a - mean of b, low, high): a percentile bootstrap over the pairs."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired scores need the same, non-zero number of items ({len(a)} and {len(b)})")
    import numpy as np

    diffs = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    # In chunks of resamples, so that memory stays at a few MB whatever the number of pairs.
    chunk = max(1, 2_000_000 // len(diffs))
    means = np.concatenate([diffs[rng.integers(0, len(diffs), (min(chunk, resamples - done), len(diffs)))].mean(axis=1)
                            for done in range(0, resamples, chunk)])
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(diffs.mean()), float(low), float(high)


def decide(challenger: Scores, champion: Scores, settings: GateSettings = GateSettings()) -> Verdict:
    gain, low, high = paired_difference_interval(challenger.accepted, champion.accepted, settings.confidence,
                                                 settings.resamples, settings.seed)
    figures = {"challenger_acceptance": challenger.acceptance, "champion_acceptance": champion.acceptance,
               "gain": gain, "gain_low": low, "gain_high": high,
               "challenger_humaneval": challenger.humaneval_pass_at_1,
               "champion_humaneval": champion.humaneval_pass_at_1}
    reasons = []
    if gain < settings.min_acceptance_gain:
        reasons.append(f"acceptance gain {gain:+.3f} is under the margin {settings.min_acceptance_gain:.3f}")
    if low <= 0:
        reasons.append(f"the {settings.confidence:.0%} interval of the gain [{low:+.3f}, {high:+.3f}] "
                       "does not lie above zero")
    if challenger.humaneval_pass_at_1 is None or champion.humaneval_pass_at_1 is None:
        reasons.append("no HumanEval pass@1 for both models: forgetting unchecked")
    else:
        drop = champion.humaneval_pass_at_1 - challenger.humaneval_pass_at_1
        figures["humaneval_drop"] = drop
        if drop > settings.max_humaneval_drop:
            reasons.append(f"HumanEval pass@1 drops by {drop:.3f}, more than {settings.max_humaneval_drop:.3f}")
    if challenger.stdlib_es and champion.stdlib_es:
        change, change_low, change_high = paired_difference_interval(
            challenger.stdlib_es, champion.stdlib_es, settings.confidence, settings.resamples, settings.seed)
        figures |= {"stdlib_es_change": change, "stdlib_es_change_low": change_low,
                    "stdlib_es_change_high": change_high}
        if -change > settings.max_stdlib_es_drop:
            reasons.append(f"edit similarity on standard-library lines drops by {-change:.3f}, more than "
                           f"{settings.max_stdlib_es_drop:.3f}")
    if not reasons:
        reasons.append(f"acceptance {champion.acceptance:.3f} -> {challenger.acceptance:.3f} "
                       f"(gain {gain:+.3f}, {settings.confidence:.0%} interval [{low:+.3f}, {high:+.3f}])")
        return Verdict(True, reasons, figures)
    return Verdict(False, reasons, figures)
