"""Offline scores on hand-made proposals: the metrics, the generation rate, the intervals."""

import pytest

from echo_dagster.evaluation.offline import by_group, score, summarize


def rows(*targets, kind="rejected_rewritten", language="python"):
    return [{"completion_id": f"c{i}", "language": language, "source_kind": kind, "target": t}
            for i, t in enumerate(targets)]


def test_each_metric_on_hand_made_proposals():
    truths = rows("return a + b\n", "x = 1\ny = 2\n", "print(value)\n", "")
    results = score(truths, ["return a + b\n", "x = 1\n", "pass\n", ""])
    assert [r.accepted for r in results] == [1, 1, 0, 0]  # an empty proposal is never accepted
    assert [r.exact for r in results] == [1, 1, 0, 1]  # a 1-line proposal is compared with 1 line
    assert results[0].es == 1.0 and results[2].es < 0.5
    assert results[1].surviving == len("x = 1\n") and results[2].surviving == 0


def test_generation_rate_is_a_ratio_of_characters_and_intervals_hold_the_value():
    truths = rows(*["return a + b\n"] * 50, *["zzz = 0\n"] * 50)
    results = score(truths, ["return a + b\n"] * 50 + ["pass\n"] * 50)
    summary = summarize(results)
    value, low, high = summary["acceptance"]
    assert value == 0.5 and low < 0.5 < high and summary["n"] == 100
    rate, low, high = summary["generation_rate"]
    assert rate == pytest.approx(50 * 13 / (50 * 13 + 50 * 8)) and low <= rate <= high


def test_scores_group_by_source_kind_and_language():
    results = score(rows("a = 1\n", kind="accepted_edited") + rows("b = 2\n", language="go"), ["a = 1\n", "c\n"])
    assert set(by_group(results, "source_kind")) == {"accepted_edited", "rejected_rewritten"}
    assert by_group(results, "language")["go"]["acceptance"][0] == 0.0
    assert summarize([]) == {"n": 0}


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


def test_the_forgetting_guards_lines_are_fixed_lines_of_the_standard_library():
    from echo_dagster.evaluation.forgetting import stdlib_rows

    rows = stdlib_rows(50)
    assert len(rows) == 50 and rows == stdlib_rows(50)  # the same lines every run, for every model
    assert {r["source_kind"] for r in rows} == {"stdlib"} and all(r["target"].count("\n") <= 1 for r in rows)
    assert len({r["completion_id"].split(":")[1] for r in rows}) > 10  # spread over the modules

