"""The repository-files baseline: examples cut from plain code of the training split, the way
self-hosted assistants fine-tune on a codebase — what Echo's experience data is compared with."""

from __future__ import annotations

from echo_dagster.corpus import line_examples, scan_source
from echo_dagster.splits import file_split, repo_of


def repository_examples(source: str, count: int, seed: int, max_lines: int = 4) -> list[dict]:
    """`count` examples at random line starts of the training-split files of `source` (a folder or
    an installed package), cut as `corpus.line_examples` cuts them."""
    files = [f for f in scan_source(source).files if file_split(repo_of(f.path), f.path) == "train"]
    if not files:
        raise ValueError(f"{source}: no file of the training split to cut examples from")
    return line_examples(files, count, seed, max_lines)
