"""The forgetting guard that moves at 135M parameters: line completions on code the base model
knows well — modules of the Python standard library — scored as the eval set is (acceptance, exact
match, edit similarity). HumanEval's line pass@1 is about zero for every model this size, so a guard
on it passes whatever happens; the edit similarity of these lines moves when a fine-tune makes the
model worse at Python it knew.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from echo_dagster.corpus import SourceFile, line_examples

# Common, long-lived modules (in every CPython since 3.8): a fixed set, so that every model and every
# run is measured on the same lines.
STDLIB_MODULES = (
    "argparse.py", "base64.py", "bisect.py", "calendar.py", "collections/__init__.py", "contextlib.py", "csv.py",
    "dataclasses.py", "difflib.py", "enum.py", "fnmatch.py", "fractions.py", "functools.py", "glob.py", "heapq.py",
    "ipaddress.py", "json/decoder.py", "json/encoder.py", "logging/__init__.py", "pathlib.py", "pprint.py",
    "queue.py", "random.py", "shutil.py", "statistics.py", "string.py", "tempfile.py", "textwrap.py",
    "threading.py", "uuid.py",
)


def stdlib_rows(count: int, seed: int = 0) -> list[dict]:
    """`count` held-out-row-shaped line completions (one line each) at random line starts of the
    standard library modules above, with source_kind "stdlib"."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [SourceFile(name, "python", (root / name).read_text(encoding="utf-8")) for name in STDLIB_MODULES
             if (root / name).is_file()]
    return [{**row, "completion_id": f"stdlib:{row['completion_id']}", "source_kind": "stdlib"}
            for row in line_examples(files, count, seed, max_lines=1)]
