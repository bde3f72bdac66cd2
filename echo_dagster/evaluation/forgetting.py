"""A forgetting guard on code nobody here wrote and the base model knows well: completions on
modules of the Python standard library, cut as a developer asks them and as the harvest cuts what
they keep (`training.repository.completion_examples`), scored as the eval set is. The gate reads
its kept characters per completion, which proposing less cannot raise (an earlier guard scored one
line by edit similarity against as many lines of the truth as the proposal had, and rose when a
model proposed less).
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

from echo_dagster.corpus import SourceFile
from echo_dagster.training.repository import completion_examples

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
    """`count` held-out-row-shaped completions at trigger points of the standard library modules
    above, with source_kind "stdlib" (each module a cluster of the guard's interval)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [SourceFile(name, "python", (root / name).read_text(encoding="utf-8")) for name in STDLIB_MODULES
             if (root / name).is_file()]
    return [{**row, "completion_id": f"stdlib:{row['completion_id']}", "source_kind": "stdlib"}
            for row in completion_examples(files, count, seed, repo="stdlib")]
