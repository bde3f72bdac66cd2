"""The forgetting guard: HumanEval line tasks and their tests, run for real."""

from echo_dagster.evaluation.humaneval import line_tasks, passes, results


def test_the_true_line_passes_and_a_wrong_one_fails():
    tasks = line_tasks(12)
    assert len(tasks) == 12 and tasks == line_tasks(12)  # the same tasks every run
    assert all(passes(t, t.truth) for t in tasks)
    assert not all(passes(t, "return None") for t in tasks)


def test_the_tasks_spread_over_the_problems_and_all_of_them_are_there():
    every = line_tasks(10**6)
    assert len({t.task_id for t in every}) == 164 and len(every) > 900
    assert len({t.task_id for t in line_tasks(300)}) > 80


def test_results_of_a_proposer_and_only_the_first_line_counts():
    tasks = line_tasks(8)
    truths = {t.request.prefix: t.truth for t in tasks}
    assert results(lambda requests: [truths[r.prefix] for r in requests], tasks) == [1] * 8
    # More lines after the right one change nothing: the guard is length-neutral.
    assert results(lambda requests: [truths[r.prefix] + "\nraise SystemExit(1)" for r in requests], tasks) == [1] * 8
    assert sum(results(lambda requests: ["" for _ in requests], tasks)) < 8
