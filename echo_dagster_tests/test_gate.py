"""The promotion gate on synthetic score tables: kept characters decide, acceptance must not fall,
guards must hold and must have data, intervals resample files."""

import pytest

from echo_dagster.evaluation.gate import GateSettings, Measured, Scores, decide, paired

FILES = 40
ROWS = 10  # per file


def measured(values) -> Measured:
    return Measured(list(values), [f"f{i // ROWS}" for i in range(len(values))])


def scores(kept_per_row: list[float], accepted: list[int] | None = None, **guards) -> Scores:
    accepted = accepted if accepted is not None else [int(k > 0) for k in kept_per_row]
    return Scores(measured(kept_per_row), measured(accepted), guards)


def guards(humaneval_passes: int = 60, stdlib_kept: float = 8.0) -> dict:
    return {"humaneval": Measured([int(i < humaneval_passes) for i in range(200)], [f"H{i // 2}" for i in range(200)]),
            "stdlib": Measured([stdlib_kept] * 100, [f"m{i // 10}" for i in range(100)])}


N = FILES * ROWS


def test_more_kept_characters_with_acceptance_held_is_promoted():
    verdict = decide(scores([6.0] * N, **guards()), scores([4.0] * N, **guards()))
    assert verdict.promote and verdict.figures["kept_gain"] == pytest.approx(2.0)
    assert verdict.figures["kept_gain_low"] > 0 and verdict.figures["files"] == FILES


@pytest.mark.parametrize("right_share", [0.0, 0.2, 0.5, 0.9])
def test_a_first_line_only_copy_never_wins_against_its_model(right_share):
    """Acceptance rises when a model proposes less (its first line matches as many lines of the
    truth), but the kept characters never rise — however often the model's later lines are wrong,
    since the right first lines of a rejected proposal are kept too: the gate refuses the copy."""
    from echo_dagster.evaluation.offline import score

    rows = [{"completion_id": f"c{i}", "language": "python", "source_kind": "x", "repo": "r", "path": f"f{i // ROWS}.py",
             "target": f"x{i} = 1\ny = compute(x{i})\nreturn y\n"} for i in range(N)]
    # The champion writes the whole block, right on a share of the rows and wrong after the first line elsewhere.
    whole = [r["target"] if i % 10 < right_share * 10 else r["target"].split("\n")[0] + "\nz = 0\nreturn z\n"
             for i, r in enumerate(rows)]
    first_line = [p.split("\n")[0] + "\n" for p in whole]
    champion, truncated = score(rows, whole), score(rows, first_line)
    if right_share < 1:
        assert sum(s.accepted for s in truncated) > sum(s.accepted for s in champion)  # acceptance alone prefers it

    def as_scores(scored):
        return Scores(Measured([s.kept for s in scored], [s.file for s in scored]),
                      Measured([s.accepted for s in scored], [s.file for s in scored]), guards())

    verdict = decide(as_scores(truncated), as_scores(champion))
    assert not verdict.promote and verdict.figures["kept_gain"] <= 0
    assert any("kept-characters gain" in r or "under the margin" in r for r in verdict.reasons)


def test_rows_from_too_few_files_cannot_promote():
    """With one file every resample is the same and the interval a point: the gate refuses."""
    one_file = Measured([6.0] * 30, ["f"] * 30), Measured([4.0] * 30, ["f"] * 30)
    accepted = Measured([1] * 30, ["f"] * 30)
    verdict = decide(Scores(one_file[0], accepted, guards()), Scores(one_file[1], accepted, guards()))
    assert not verdict.promote and any("from 1 files, fewer than the 10" in r for r in verdict.reasons)


def test_a_guard_without_the_champions_scores_refuses_with_its_reason():
    half = guards() | {"stdlib": Measured([], [])}
    verdict = decide(scores([6.0] * N, **guards()), scores([4.0] * N, **half))
    assert not verdict.promote and any("stdlib guard is configured but has no scores" in r for r in verdict.reasons)


def test_a_tie_is_not_promoted():
    verdict = decide(scores([4.0] * N, **guards()), scores([4.0] * N, **guards()))
    assert not verdict.promote and any("interval" in r for r in verdict.reasons)


def test_a_gain_carried_by_one_file_does_not_clear_zero_when_files_are_resampled():
    """20 rows of one file gain a lot, the other 39 files nothing: row-level resampling would call
    it a win; resampling files sees one file."""
    new = [40.0 if i < ROWS else 4.0 for i in range(N)]
    verdict = decide(scores(new, **guards()), scores([4.0] * N, **guards()))
    assert not verdict.promote and verdict.figures["kept_gain"] > 0 and verdict.figures["kept_gain_low"] <= 0


def test_acceptance_must_be_non_inferior():
    # More characters kept on the rows it keeps, but accepted on 30% fewer rows.
    accepted_old = [1] * N
    accepted_new = [int(i % 10 >= 3) for i in range(N)]
    verdict = decide(scores([9.0 if a else 0.0 for a in accepted_new], accepted_new, **guards()),
                     scores([4.0] * N, accepted_old, **guards()))
    assert not verdict.promote and any("acceptance may fall" in r for r in verdict.reasons)


def test_a_guard_that_drops_blocks_a_win_and_one_within_its_margin_does_not():
    old = scores([4.0] * N, **guards())
    forgot_humaneval = decide(scores([6.0] * N, **guards(humaneval_passes=50)), old)
    assert not forgot_humaneval.promote and any("HumanEval" in r for r in forgot_humaneval.reasons)
    forgot_stdlib = decide(scores([6.0] * N, **guards(stdlib_kept=6.0)), old)
    assert not forgot_stdlib.promote and any("standard-library" in r for r in forgot_stdlib.reasons)
    assert decide(scores([6.0] * N, **guards(humaneval_passes=58, stdlib_kept=7.5)), old).promote


def test_a_configured_guard_without_data_refuses_and_one_left_out_is_not_read():
    no_stdlib = {"humaneval": guards()["humaneval"]}
    verdict = decide(scores([6.0] * N, **no_stdlib), scores([4.0] * N, **no_stdlib))
    assert not verdict.promote and any("stdlib guard is configured but has no scores" in r for r in verdict.reasons)
    assert decide(scores([6.0] * N, **no_stdlib), scores([4.0] * N, **no_stdlib),
                  GateSettings(guards=("humaneval",))).promote
    with pytest.raises(ValueError, match="unknown guard"):
        decide(scores([6.0] * N), scores([4.0] * N), GateSettings(guards=("mmlu",)))


def test_the_margin_is_a_setting():
    assert not decide(scores([5.0] * N, **guards()), scores([4.0] * N, **guards()), GateSettings(min_kept_gain=2.0)).promote
    assert decide(scores([7.0] * N, **guards()), scores([4.0] * N, **guards()), GateSettings(min_kept_gain=2.0)).promote


def test_paired_scores_need_the_same_items():
    with pytest.raises(ValueError, match="same items"):
        paired(measured([1, 0]), Measured([1, 0], ["a", "b"]), GateSettings())
    gain, low, high = paired(measured([1] * 10), measured([0] * 10), GateSettings())
    assert gain == low == high == 1.0
