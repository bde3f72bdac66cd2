"""How many cuts a change to the completion rules moves: the same random line starts of each corpus
(the rest of the file after the cursor as the text, at most 8 lines) cut by `completion.postprocess`
at another revision and at this checkout; the count that differ, and a few of them.

    python benchmarks/cut_changes.py --against 13d2fb9
    python benchmarks/cut_changes.py --against HEAD~1 --sources dagster_shared --show 3

A rule change that moves a few cuts leaves figures measured before it standing; one that moves
many asks for the measurement again.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from languages import CORPORA

REPO = Path(__file__).resolve().parents[1]


def cuts(source: str, count: int) -> list[str]:
    from echo_dagster.completion import CompletionRequest, postprocess
    from echo_dagster.corpus import scan_source

    files = scan_source(source).files
    rng = random.Random(0)
    out = []
    for _ in range(count):
        file = rng.choice(files)
        lines = file.text.splitlines(keepends=True)
        at = rng.randrange(len(lines))
        if not lines[at].strip():
            continue
        indent = lines[at][: len(lines[at]) - len(lines[at].lstrip(" \t"))]
        request = CompletionRequest("".join(lines[:at]) + indent, "", file.language)
        out.append(postprocess(request, "".join(lines[at : at + 12])[len(indent) :], 8))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", help="the other revision (git)")
    parser.add_argument("--sources", default=";".join(("dagster_shared", *CORPORA)), help="corpora separated by ';'")
    parser.add_argument("--count", type=int, default=400, help="line starts drawn a corpus")
    parser.add_argument("--show", type=int, default=0, help="differing cuts printed a corpus")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # this checkout's cuts, as JSON
    args = parser.parse_args()
    sources = args.sources.split(";")
    if args.json:
        json.dump({source: cuts(source, args.count) for source in sources}, sys.stdout)
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", tmp, args.against], check=True)
        try:
            command = [sys.executable, __file__, "--json", "--sources", args.sources, "--count", str(args.count)]
            before = json.loads(subprocess.run(command, check=True, capture_output=True, text=True,
                                               env={**os.environ, "PYTHONPATH": tmp}).stdout)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", tmp], check=True)
    for source in sources:
        now = cuts(source, args.count)
        moved = [(a, b) for a, b in zip(before[source], now) if a != b]
        print(f"{source}: {len(moved)} of {len(now)} cuts differ from {args.against}")
        for a, b in moved[: args.show]:
            print(f"--- {args.against}:\n{a}--- now:\n{b}")


if __name__ == "__main__":
    main()
