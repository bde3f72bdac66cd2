"""Real code to replay: the files of a folder or of an installed package."""

from __future__ import annotations

import importlib.util
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from echo_dagster.syntax import EXTENSIONS, error_spans, parser_for

# Real code that installs with the project and is newer than the base model's training data
# (dagster-shared was split out of dagster in 2025): what the demo replays.
DEFAULT_CORPUS = "dagster_shared"


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative to the source root
    language: str
    text: str


@dataclass
class SourceScan:
    root: Path
    files: list[SourceFile]
    skipped: Counter = field(default_factory=Counter)  # reason -> files


def scan_source(source: str, *, max_bytes: int = 200_000, min_lines: int = 20) -> SourceScan:
    """Files of `source` (a folder, or the name of an installed package) that the simulator can
    replay; others are skipped and counted: binary, too_large, too_short, unparseable, no_grammar."""
    root = _root(source)
    scan = SourceScan(root, [])
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        language = EXTENSIONS.get(path.suffix)
        if language is None:
            continue
        reason, text = _check(path, language, max_bytes, min_lines)
        if reason:
            scan.skipped[reason] += 1
        else:
            scan.files.append(SourceFile(path.relative_to(root).as_posix(), language, text))
    if not scan.files:
        raise ValueError(f"source {source!r} ({root}) holds no code the simulator can replay "
                         f"(skipped: {dict(scan.skipped) or 'nothing found'})")
    return scan


def _root(source: str) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    try:
        spec = importlib.util.find_spec(source)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    raise ValueError(f"source {source!r} is neither a folder nor an installed package")


def _check(path: Path, language: str, max_bytes: int, min_lines: int) -> tuple[str | None, str]:
    if parser_for(language) is None:
        return "no_grammar", ""
    data = path.read_bytes()
    if len(data) > max_bytes:
        return "too_large", ""
    if b"\x00" in data:
        return "binary", ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "binary", ""
    if text.count("\n") < min_lines:
        return "too_short", ""
    if error_spans(data, language):
        return "unparseable", ""
    return None, text


def line_examples(files: list[SourceFile], count: int, seed: int, max_lines: int = 4) -> list[dict]:
    """`count` examples at random line starts of `files`: the file around them as prefix and
    suffix, the next 1–`max_lines` lines as target, shaped like refined targets (the typed
    indentation ends the prefix, the model writes the rest)."""
    if not files:
        raise ValueError("no file to cut examples from")
    import random

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
        examples.append({"completion_id": f"{file.path}:{at}", "path": file.path,
                         "prefix": "".join(lines[:at]) + indent,
                         "suffix": "".join(lines[at + len(taken) :]), "target": target[len(indent) :],
                         "language": file.language})
    return examples

