"""The repository-files baselines: examples cut from plain code of the training split, the way
self-hosted assistants fine-tune on a codebase — what Echo's experience data is compared with.

Two cuts: random line starts and 1–4 lines (`corpus.line_examples`), and **cut like completions** —
at the cursor positions a developer asks at (`completion.trigger_points`), each target the code
there up to the end of its syntactic unit by the rule the harvest cuts what a user kept
(`completion.postprocess`, `completion.MAX_LINES`). The second is what a fine-tune on the team's
repository with FIM-style spans gives: the same shape of example as Echo's, without a user.
"""

from __future__ import annotations

import random

from echo_dagster.completion import MAX_LINES, CompletionRequest, postprocess, trigger_points
from echo_dagster.corpus import SourceFile, line_examples, scan_source
from echo_dagster.splits import file_split, repo_of

_READ_AHEAD = 4_000  # characters after the cursor a target can come from (MAX_LINES lines fit)


def training_files(source: str) -> list[SourceFile]:
    """The training-split files of `source` (a folder or an installed package)."""
    files = [f for f in scan_source(source).files if file_split(repo_of(f.path), f.path) == "train"]
    if not files:
        raise ValueError(f"{source}: no file of the training split to cut examples from")
    return files


def repository_examples(source: str, count: int, seed: int, max_lines: int = 4) -> list[dict]:
    """`count` examples at random line starts of the training-split files of `source`, cut as
    `corpus.line_examples` cuts them."""
    return line_examples(training_files(source), count, seed, max_lines)


def completion_examples(files: list[SourceFile], count: int, seed: int, repo: str | None = None) -> list[dict]:
    """Up to `count` examples at trigger points of `files` drawn at random (`seed`), each target cut
    by the completion rule, shaped like refined targets (prefix, suffix, target, language, repo,
    path). `repo`: the repository the rows name (by default the file's, `splits.repo_of`)."""
    rng = random.Random(seed)
    candidates = [(f, pos) for f in files for pos, _ in trigger_points(f.text)]
    rng.shuffle(candidates)
    examples = []
    for file, pos in candidates:
        if len(examples) >= count:
            break
        text = file.text
        request = CompletionRequest(text[:pos], text[pos:], file.language)
        target = postprocess(request, text[pos : pos + _READ_AHEAD], MAX_LINES)
        # The rule strips trailing white space of lines: such a cut is not the file's text, and is left out.
        if not target.strip() or not text.startswith(target, pos):
            continue
        examples.append({"completion_id": f"{file.path}:{pos}", "repo": repo or repo_of(file.path), "path": file.path,
                         "prefix": text[:pos], "suffix": text[pos + len(target) :], "target": target,
                         "language": file.language})
    return examples
