"""The evaluation suite's parts: which models are measured, the replay A/B, the rendered report, the
decision record."""

import json

from echo_dagster.corpus import scan_source
from echo_dagster.evaluation import gate, offline, promotion, report
from echo_dagster.evaluation.suite import Arm, ArmResult, arms, by_role
from echo_dagster.simulate.run import SimulationSpec, replay
from echo_dagster.splits import file_split, repo_of
from echo_dagster.training.registry import Registry
from echo_dagster_tests.test_simulate import SOURCE, START, half_right


def test_a_model_in_two_roles_is_measured_once():
    measured = arms("base-spec", None, ("echo-1", "/r/echo-1/merged"), ("repo-1", "/r/repo-1/merged"))
    assert [(a.name, a.roles) for a in measured] == [("base-spec", ("base", "champion")),
                                                     ("echo-1", ("challenger",)), ("repo-1", ("repository",))]
    promoted = arms("base-spec", ("echo-0", "/r/echo-0/merged"), ("echo-0", "/r/echo-0/merged"), None)
    assert [(a.name, a.roles) for a in promoted] == [("base-spec", ("base",)), ("echo-0", ("champion", "challenger"))]


def test_the_replay_gives_every_model_the_same_held_out_sessions():
    spec = SimulationSpec(source=SOURCE, start=START, days=1, users=3, max_completions=30, seed=3)
    seen = []

    def recording(propose):
        def wrapped(requests):
            seen.append(requests)
            return propose(requests)
        return wrapped

    good = replay(spec, recording(half_right), "oracle")
    bad = replay(spec, recording(lambda requests: ["zzz"] * len(requests)), "nonsense")
    assert seen[0] == seen[1] and good.completions == bad.completions == len(seen[0]) > 0
    assert bad.accepted == 0 and good.acceptance_rate > 0.2
    # Held-out files only: each prompt opens and ends as an eval-split file of the corpus (PII may be
    # planted in between; a cursor may stand within a file's first 40 characters).
    files = scan_source(SOURCE).files
    held_out = [f for f in files if file_split(repo_of(f.path), f.path) == "eval"]
    assert 0 < len(held_out) < len(files)
    assert all(any(f.text.endswith(r.suffix) and f.text.startswith(r.prefix[:40]) for f in held_out)
               for r in seen[0])


def results():
    rows = [{"completion_id": f"c{i}", "language": "python", "source_kind": kind, "target": "return a + b\n",
             "repo": "r", "path": f"f{i % 5}.py", "session_id": f"s{i % 2}"}
            for i, kind in enumerate(["rejected_rewritten", "accepted_edited"] * 10)]
    quarter = [("HumanEval/0", 1), ("HumanEval/1", 0), ("HumanEval/2", 0), ("HumanEval/3", 0)]
    base = offline.score(rows, ["pass\n"] * 20)
    echo = offline.score(rows, ["return a + b\n"] * 15 + ["pass\n"] * 5)
    return [ArmResult(Arm(name, name, roles), scored, offline.summarize(scored), offline.by_group(scored, "language"),
                      offline.by_group(scored, "source_kind"), {"acceptance_rate": rate, "generation_rate": rate / 2,
                                                                "kept_chars": rate * 4, "completions": 20,
                                                                "sessions": 2}, he)
            for name, roles, scored, rate, he in (("base", ("base", "champion"), base, 0.1, quarter),
                                                  ("echo-1", ("challenger",), echo, 0.3, quarter))]


def test_the_report_renders_tables_chart_and_json(tmp_path):
    measured = results()
    verdict = gate.decide(promotion.scores(by_role(measured, "challenger")), promotion.scores(by_role(measured, "champion")),
                          gate.GateSettings(guards=("humaneval",), min_files=5))
    built = report.build("Echo evaluation", measured, verdict, {"challenger": "echo-1", "eval_rows": 20})
    overall = built.markdown("Held-out eval set (95% intervals resampling files)")
    assert "| base | base, champion | 20 | 5 | 2 | 0.00 [0.00, 0.00] | 0.0% [0.0%, 0.0%]" in overall
    assert "| echo-1 | challenger | 20 | 5 | 2 | 9.75 [" in overall and "| 30.0% | 1.20 | 25.0% | – |" in overall
    assert "accepted_edited" in built.markdown("Acceptance by source kind")
    assert built.chart_png.startswith(b"\x89PNG") and built.chart_markdown().startswith("![")
    page = built.write(tmp_path / "report")
    text = page.read_text()
    assert "<table>" in text and "data:image/png;base64," in text and "src=\"http" not in text  # self-contained
    figures = json.loads((tmp_path / "report" / "report.json").read_text())
    assert figures["gate"]["promote"] is True and figures["models"][1]["eval_set"]["acceptance"][0] == 0.75
    assert (tmp_path / "report" / "chart.png").read_bytes() == built.chart_png


def test_every_decision_is_recorded_in_the_registry(tmp_path):
    registry = Registry(tmp_path)
    first = registry.record_decision({"challenger": "echo-1", "promoted": False, "reasons": ["a tie"]})
    second = registry.record_decision({"challenger": "echo-2", "promoted": True, "reasons": ["a win"]})
    kept = [json.loads((tmp_path / path).read_text()) for path in (first, second)]
    assert [(d["challenger"], d["promoted"], d["reasons"]) for d in kept] == [("echo-1", False, ["a tie"]),
                                                                              ("echo-2", True, ["a win"])]
    assert all(d["decided_at"] for d in kept)


def test_the_ui_gets_the_comparison_in_narrow_tables_acceptance_first_with_bars():
    measured = results()
    built = report.build("Echo evaluation", measured, None, {})
    # The challenger first; models by role (their names are long, and metadata of their own).
    header, rows = built.ui_tables[report.KEPT]
    assert header == ("model", "kept chars / request", "95% interval", "rows, files")
    assert rows[0][0] == "challenger" and rows[0][1] == "9.75" and rows[0][3] == "20, 5"
    header, rows = built.ui_tables[report.ACCEPTANCE]
    assert header == ("model", "acceptance", "95% interval", "bar, 0–100%")
    assert rows[0][:2] == ("challenger", "75.0%") and rows[0][2].endswith("%")
    assert rows[1] == ("champion, base", "0.0%", "0.0%–0.0%", "·" * report.BAR_CELLS)
    assert rows[0][3] == "█" * 7 + "▌" + "··"
    header, rows = built.ui_tables[report.MEASURES]
    assert header == ("measure", "challenger", "champion, base")
    assert [r[0] for r in rows] == ["exact match", "exact match, k lines", "ES", "ES, k lines", "line precision",
                                    "line recall", "generation rate", "proposal chars", "replay acceptance",
                                    "replay kept chars", "HumanEval lines pass", "stdlib kept chars"]
    assert rows[0][1:] == ("75.0%", "0.0%") and rows[8][1:] == ("30.0%", "10.0%")
    header, rows = built.ui_tables[report.BY_SOURCE_KIND]
    assert header == ("source kind", "challenger", "champion, base")
    assert [r[0] for r in rows] == ["accepted_edited", "rejected_rewritten"]
    # At most four columns: they fit an asset overview's metadata column.
    assert all(len(h) <= 4 for h, _ in built.ui_tables.values())
    assert report.bar(0.5, 4) == "██··" and report.bar(1 / 32, 4) == "▏···"
    assert report.bar(2.0, 2) == "██" and report.bar(-1.0, 2) == "··"
