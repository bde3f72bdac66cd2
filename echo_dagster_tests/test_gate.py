"""The promotion gate on synthetic score tables: win, tie, loss, forgetting."""

import pytest

from echo_dagster.evaluation.gate import GateSettings, Scores, decide, paired_difference_interval

N = 400


def scores(accepted: int, humaneval: float | None = 0.30, offset: int = 0) -> Scores:
    """`accepted` of N completions accepted, starting at `offset` (so two models can agree or not)."""
    return Scores([1 if offset <= i < offset + accepted else 0 for i in range(N)], humaneval)


def test_a_clear_win_is_promoted():
    verdict = decide(scores(140), scores(100))
    assert verdict.promote and verdict.figures["gain"] == pytest.approx(0.1)
    assert verdict.figures["gain_low"] > 0


def test_a_tie_is_not_promoted():
    verdict = decide(scores(100), scores(100))
    assert not verdict.promote and any("interval" in r for r in verdict.reasons)


def test_a_loss_is_not_promoted():
    verdict = decide(scores(80), scores(100))
    assert not verdict.promote and verdict.figures["gain"] < 0


def test_a_small_win_within_noise_is_not_promoted():
    # 4 more acceptances, but the models disagree on many completions: the interval spans zero.
    verdict = decide(scores(104, offset=150), scores(100))
    assert not verdict.promote and verdict.figures["gain_low"] <= 0 < verdict.figures["gain"]


def test_forgetting_blocks_a_win():
    verdict = decide(scores(140, humaneval=0.25), scores(100, humaneval=0.30))
    assert not verdict.promote and any("HumanEval" in r for r in verdict.reasons)
    assert decide(scores(140, humaneval=0.29), scores(100, humaneval=0.30)).promote  # within 2 points


def test_the_margin_is_a_setting():
    assert not decide(scores(110), scores(100), GateSettings(min_acceptance_gain=0.05)).promote
    assert decide(scores(140), scores(100), GateSettings(min_acceptance_gain=0.05)).promote


def test_the_interval_needs_paired_scores():
    with pytest.raises(ValueError, match="same, non-zero number"):
        paired_difference_interval([1, 0], [1])
    gain, low, high = paired_difference_interval([1] * 10, [0] * 10)
    assert gain == low == high == 1.0


def test_forgetting_on_standard_library_lines_blocks_a_win():
    def with_stdlib(accepted: int, es: list[float]) -> Scores:
        return Scores(scores(accepted).accepted, 0.30, es)

    known = [0.9] * 150 + [0.5] * 50  # the champion's edit similarity on 200 lines it knows
    worse = [0.8] * 150 + [0.5] * 50  # 0.075 lower on average
    verdict = decide(with_stdlib(140, worse), with_stdlib(100, known))
    assert not verdict.promote and any("standard-library" in r for r in verdict.reasons)
    assert verdict.figures["stdlib_es_change"] == pytest.approx(-0.075)
    assert decide(with_stdlib(140, [0.89] * 150 + [0.5] * 50), with_stdlib(100, known)).promote  # within 0.02

