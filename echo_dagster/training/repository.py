"""The repository-files baseline: examples cut from plain code of the training split, the way
self-hosted assistants fine-tune on a codebase — what Echo's experience data is compared with."""

from __future__ import annotations

import random

from echo_dagster.corpus import scan_source
from echo_dagster.splits import file_split, repo_of


def repository_examples(source: str, count: int, seed: int, max_lines: int = 4) -> list[dict]:
    """`count` examples at random line starts of the training-split files of `source` (a folder or
    an installed package): the file around them as prefix and suffix, the next 1–`max_lines` lines
    as target — shaped like refined targets (the typed indentation ends the prefix)."""
    files = [f for f in scan_source(source).files if file_split(repo_of(f.path), f.path) == "train"]
    if not files:
        raise ValueError(f"{source}: no file of the training split to cut examples from")
    rng = random.Random(seed)
    examples: list[dict] = []
    while len(examples) < count:
        file = rng.choice(files)
        lines = file.text.splitlines(keepends=True)
        at = rng.randrange(len(lines))
        taken = lines[at : at + rng.randint(1, max_lines)]
        target = "".join(taken)
        if not target.strip():
            continue
        indent = target[: len(target) - len(target.lstrip(" \t"))]
        examples.append({"completion_id": f"{file.path}:{at}", "path": file.path, "prefix": "".join(lines[:at]) + indent,
                         "suffix": "".join(lines[at + len(taken) :]), "target": target[len(indent) :],
                         "language": file.language})
    return examples
