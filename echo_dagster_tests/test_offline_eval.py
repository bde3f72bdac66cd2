"""Offline scores on hand-made proposals: the metrics against the whole target and its first lines,
kept characters, and intervals that resample files."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from echo_dagster.evaluation.offline import by_group, paired, score, summarize
from echo_dagster.metrics import kept_chars


def rows(*targets, kind="rejected_rewritten", language="python", files=None):
    return [{"completion_id": f"c{i}", "language": language, "source_kind": kind, "target": t, "repo": "r",
             "path": f"f{i % files}.py" if files else f"f{i}.py", "session_id": f"s{i % 3}"}
            for i, t in enumerate(targets)]


def test_each_metric_on_hand_made_proposals():
    truths = rows("return a + b\n", "x = 1\ny = 2\n", "print(value)\n", "")
    results = score(truths, ["return a + b\n", "x = 1\n", "pass\n", ""])
    assert [r.accepted for r in results] == [1, 1, 0, 0]  # an empty proposal is never accepted
    # Against the whole target a right first line of two is not an exact match; against its first lines it is.
    assert [r.exact for r in results] == [1, 0, 0, 1] and [r.exact_prefix for r in results] == [1, 1, 0, 1]
    assert results[1].es < results[1].es_prefix == 1.0
    assert [r.kept for r in results] == [len("return a + b\n"), len("x = 1\n"), 0, 0]
    assert (results[1].line_hits, results[1].proposal_lines, results[1].truth_lines) == (1, 1, 2)
    assert results[0].es == 1.0 and results[2].es < 0.5
    assert results[1].surviving == len("x = 1\n") and results[2].surviving == 0


def test_a_proposal_cut_shorter_never_keeps_more():
    truths = rows("a = 1\nb = 2\nc = 3\n")
    whole, first = score(truths, ["a = 1\nb = 2\nc = 3\n"])[0], score(truths, ["a = 1\n"])[0]
    assert whole.accepted == first.accepted == 1 and first.kept < whole.kept
    assert first.line_hits / first.truth_lines < whole.line_hits / whole.truth_lines  # recall


def test_a_proposal_right_only_in_its_first_lines_keeps_those_lines():
    """Rejected as a whole, a proposal still keeps the run of first lines a developer would take
    line by line: its copy cut to the first line keeps no more than it."""
    truths = rows("a = 1\nb = 2\nc = 3\n")
    whole, first = score(truths, ["a = 1\nzz = call()\nreturn zz\n"])[0], score(truths, ["a = 1\n"])[0]
    assert whole.accepted == 0 and first.accepted == 1
    assert whole.kept == first.kept == len("a = 1\n")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a = 1", "b = f(a)", "return b", "x", "", "    pass", "c = [a, b]"]),
                min_size=1, max_size=6),
       st.lists(st.sampled_from(["a = 1", "b = f(a)", "return b", "y = 2", "    pass"]), min_size=1, max_size=6),
       st.integers(1, 6))
def test_cutting_a_proposal_to_its_first_lines_never_keeps_more(proposal_lines, truth_lines, k):
    proposal, truth = "\n".join(proposal_lines) + "\n", "\n".join(truth_lines) + "\n"
    cut = "".join(proposal.splitlines(keepends=True)[:k])
    assert kept_chars(cut, truth) <= kept_chars(proposal, truth) <= len(truth)


def test_generation_rate_is_a_ratio_of_characters_and_intervals_hold_the_value():
    truths = rows(*["return a + b\n"] * 50, *["zzz = 0\n"] * 50)
    results = score(truths, ["return a + b\n"] * 50 + ["pass\n"] * 50)
    summary = summarize(results)
    value, low, high = summary["acceptance"]
    assert value == 0.5 and low < 0.5 < high and summary["n"] == 100 and summary["files"] == 100
    assert summary["sessions"] == 3
    rate, low, high = summary["generation_rate"]
    assert rate == pytest.approx(50 * 13 / (50 * 13 + 50 * 8)) and low <= rate <= high


def test_intervals_resample_files_so_rows_of_few_files_give_a_wide_interval():
    """The same 100 rows, as 100 files or as 4: the rows of a file rise and fall together, and an
    interval over 4 files is wider than one over 100 independent rows."""
    targets = ["return a + b\n"] * 100
    proposals = ["return a + b\n" if i % 4 < 2 else "pass\n" for i in range(100)]
    spread = summarize(score(rows(*targets), proposals))["acceptance"]
    clustered = summarize(score(rows(*targets, files=4), proposals))["acceptance"]
    assert spread[0] == clustered[0] == 0.5
    assert clustered[2] - clustered[1] > 2 * (spread[2] - spread[1])


def test_paired_differences_have_their_counts_and_need_the_same_rows():
    truths = rows(*["return a + b\n"] * 20, files=5)
    better, worse = score(truths, ["return a + b\n"] * 20), score(truths, ["pass\n"] * 20)
    diff = paired(better, worse)
    assert diff["acceptance"] == (1.0, 1.0, 1.0) and diff["kept_chars"][0] == len("return a + b\n")
    assert (diff["n"], diff["files"]) == (20, 5)
    with pytest.raises(ValueError, match="same, non-empty rows"):
        paired(better, worse[:-1])


def test_scores_group_by_source_kind_and_language():
    results = score(rows("a = 1\n", kind="accepted_edited") + rows("b = 2\n", language="go"), ["a = 1\n", "c\n"])
    assert set(by_group(results, "source_kind")) == {"accepted_edited", "rejected_rewritten"}
    assert by_group(results, "language")["go"]["acceptance"][0] == 0.0
    assert summarize([]) == {"n": 0, "files": 0, "sessions": 0}


def test_a_model_is_evaluated_on_held_out_rows(tiny_model_dir):
    from echo_dagster.evaluation.offline import evaluate
    from echo_dagster.model.generation import complete
    from echo_dagster.model.loading import load_model

    loaded = load_model(str(tiny_model_dir), tiny_model_dir.parent)
    held_out = [{"completion_id": f"c{n}", "language": "python", "source_kind": "rejected_rewritten",
                 "prefix": f"def area_{n}(r):\n    ", "suffix": "\n", "target": "return r * r\n"} for n in range(3)]
    results = evaluate(lambda requests: complete(loaded, requests), held_out)
    assert [r.completion_id for r in results] == ["c0", "c1", "c2"]
    assert all(0.0 <= r.es <= 1.0 and r.truth_chars == len("return r * r\n") for r in results)
    assert [r.file for r in results] == ["c0", "c1", "c2"]  # a row without a file is a cluster of its own


def test_the_forgetting_guards_completions_are_fixed_cuts_of_the_standard_library():
    from echo_dagster.evaluation.forgetting import stdlib_rows

    rows = stdlib_rows(50)
    assert len(rows) == 50 and rows == stdlib_rows(50)  # the same completions every run, for every model
    assert {r["source_kind"] for r in rows} == {"stdlib"} and all(r["target"].count("\n") <= 4 for r in rows)
    assert len({r["path"] for r in rows}) > 10  # spread over the modules
    # Cut where a developer asks: both mid-line and at line starts, the file's own text.
    assert any(r["prefix"].rpartition("\n")[2].strip() for r in rows)
    assert any(not r["prefix"].rpartition("\n")[2].strip() for r in rows)
