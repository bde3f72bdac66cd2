"""The promotion gate: a challenger serves only if users would keep more of what it proposes, it is
accepted no less often, and every configured forgetting guard holds.

What it decides on is kept characters per request (`metrics.kept_chars`), a measure a model cannot
raise by proposing less: a proposal cut after its first right line keeps fewer characters, where
acceptance would count it as well as the whole. Every comparison is paired — both models on the
same rows — and its interval a cluster bootstrap over files (`intervals`), since the rows of one
file rise and fall together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from echo_dagster.evaluation import intervals

GUARDS = ("humaneval", "stdlib")


@dataclass(frozen=True)
class GateSettings:
    min_kept_gain: float = 0.0  # kept characters per request the challenger must gain
    max_acceptance_loss: float = 0.03  # acceptance non-inferior: the interval's low end above −this
    # Fewer files than this and a bootstrap over files cannot decide (with one, every resample is
    # the same and the interval is a point): the gate refuses rather than trust it.
    min_files: int = 10
    guards: tuple[str, ...] = GUARDS  # each must have data for both models, or the gate refuses
    max_humaneval_drop: float = 0.02  # of the line tasks' pass rate, absolute
    max_stdlib_drop: float = 0.10  # of kept characters per standard-library completion, relative to the champion's
    confidence: float = 0.95
    resamples: int = intervals.DEFAULT_RESAMPLES
    seed: int = 0


@dataclass(frozen=True)
class Measured:
    """One score per item (a held-out row, a line task) and the cluster each item belongs to."""

    values: list[float]
    clusters: list[str]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.values else 0.0


@dataclass(frozen=True)
class Scores:
    """A model's results, in an order every model shares: kept characters and acceptance per
    held-out row, and each guard's per-item scores (`GUARDS`; a guard not measured is absent)."""

    kept: Measured
    accepted: Measured
    guards: dict[str, Measured] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reasons: list[str]
    figures: dict = field(default_factory=dict)


def paired(a: Measured, b: Measured, settings: GateSettings) -> tuple[float, float, float]:
    """(mean of a − mean of b, low, high), the clusters resampled."""
    if a.clusters != b.clusters:
        raise ValueError("paired scores need the same items in the same order")
    return intervals.difference(a.values, None, b.values, None, a.clusters, settings.confidence,
                                settings.resamples, settings.seed)


def decide(challenger: Scores, champion: Scores, settings: GateSettings = GateSettings()) -> Verdict:
    files = len(set(challenger.kept.clusters))
    gain, low, high = paired(challenger.kept, champion.kept, settings)
    change, change_low, change_high = paired(challenger.accepted, champion.accepted, settings)
    figures = {"challenger_kept_chars": challenger.kept.mean, "champion_kept_chars": champion.kept.mean,
               "kept_gain": gain, "kept_gain_low": low, "kept_gain_high": high,
               "challenger_acceptance": challenger.accepted.mean, "champion_acceptance": champion.accepted.mean,
               "acceptance_change": change, "acceptance_change_low": change_low,
               "acceptance_change_high": change_high, "rows": len(challenger.kept.values), "files": files}
    interval = f"{settings.confidence:.0%} interval over {files} files"
    reasons = []
    if files < settings.min_files:
        reasons.append(f"the held-out rows come from {files} files, fewer than the {settings.min_files} "
                       "an interval over files needs to decide")
    if gain < settings.min_kept_gain:
        reasons.append(f"kept characters per request change by {gain:+.2f}, under the margin {settings.min_kept_gain:.2f}")
    if low <= 0:
        reasons.append(f"the {interval} of the kept-characters gain [{low:+.2f}, {high:+.2f}] does not lie above zero")
    if change_low < -settings.max_acceptance_loss:
        reasons.append(f"acceptance may fall: the {interval} of its change [{change_low:+.3f}, {change_high:+.3f}] "
                       f"reaches below −{settings.max_acceptance_loss:.3f}")
    for guard in settings.guards:
        reasons += _guard(guard, challenger.guards.get(guard), champion.guards.get(guard), settings, figures)
    if not reasons:
        reasons.append(f"kept characters per request {champion.kept.mean:.2f} -> {challenger.kept.mean:.2f} "
                       f"(gain {gain:+.2f}, {interval} [{low:+.2f}, {high:+.2f}]); acceptance "
                       f"{champion.accepted.mean:.3f} -> {challenger.accepted.mean:.3f}")
        return Verdict(True, reasons, figures)
    return Verdict(False, reasons, figures)


def _guard(name: str, new: Measured | None, old: Measured | None, settings: GateSettings, figures: dict) -> list[str]:
    """The reasons a configured guard refuses: it has no data (never skipped silently), or the
    challenger falls behind the champion by more than the guard's margin."""
    if name not in GUARDS:
        raise ValueError(f"unknown guard {name!r}; the guards are {', '.join(GUARDS)}")
    if not new or not old or not new.values or not old.values:
        return [f"the {name} guard is configured but has no scores for both models: forgetting unchecked"]
    change, low, high = paired(new, old, settings)
    figures |= {f"{name}_challenger": new.mean, f"{name}_champion": old.mean, f"{name}_change": change,
                f"{name}_change_low": low, f"{name}_change_high": high}
    if name == "humaneval":
        if -change > settings.max_humaneval_drop:
            return [f"HumanEval line tasks pass {-change:.3f} less often, more than {settings.max_humaneval_drop:.3f}"]
    elif -change > settings.max_stdlib_drop * old.mean:  # so old.mean > 0: kept characters are never negative
        return [f"kept characters on standard-library completions drop by {-change:.2f} ({-change / old.mean:.0%}), "
                f"more than {settings.max_stdlib_drop:.0%}"]
    return []
