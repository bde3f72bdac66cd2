"""The forgetting guard: HumanEval line tasks and their tests, run for real."""

from echo_dagster.evaluation.humaneval import line_tasks, pass_at_1, passes


def test_the_true_line_passes_and_a_wrong_one_fails():
    tasks = line_tasks(problems=6)
    assert len(tasks) == 6 and tasks[0].task_id == "HumanEval/0"
    assert all(passes(t, t.truth) for t in tasks)
    assert not any(passes(t, "return None") for t in tasks if not t.truth.startswith("return None"))


def test_pass_at_1_of_a_proposer():
    tasks = line_tasks(problems=4, lines_per_problem=2)
    truths = {t.request.prefix: t.truth for t in tasks}
    assert pass_at_1(lambda requests: [truths[r.prefix] for r in requests], tasks) == 1.0
    assert pass_at_1(lambda requests: ["" for _ in requests], tasks) < 1.0
