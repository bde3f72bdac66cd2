"""How well the person-name detection does on code: false positives on real code, recall on names
planted in comments and strings.

    python benchmarks/deidentify.py                 # every 4th file of the dagster package
    python benchmarks/deidentify.py --every 1

False positives: every PERSON finding in the installed `dagster` package's Python files (which name
no people in their comments and strings, by inspection of the findings listed). Recall: names of
several origins planted in typical comment and string forms, one per file, each form counted.
Appends the figures to benchmarks/out/deidentify.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import time
from collections import Counter
from pathlib import Path

from report import report

FIRST = ("Jane", "Ravi", "Olga", "Tomasz", "Amara", "Kenji", "Lucia", "Omar", "Mei", "Sipho", "Ana", "Lars",
         "Priya", "Diego", "Fatima", "Chen")
LAST = ("Doe", "Patel", "Ivanova", "Nowak", "Okafor", "Tanaka", "Rossi", "Haddad", "Zhang", "Dlamini", "Silva",
        "Eriksson", "Sharma", "Lopez", "Khan", "Wong")
FORMS = {
    "author_comment": "# Author: {first} {last}\n",
    "copyright": "# Copyright 2025 {first} {last}. All rights reserved.\n",
    "docstring": '"""Written by {first} {last} for the billing team."""\n',
    "error_string": 'raise PermissionError("ask {first} {last} for access")\n',
    "todo_with_full_name": "# TODO({first} {last}): drop this once the migration is done\n",
    "lowercase_full_name": "# reviewed by {lfirst} {llast}\n",
    "first_name_only": "# {first} says this is slow\n",
    "last_comma_first": "# owner: {last}, {first}\n",
}


def main() -> None:
    from echo_dagster.filters.deidentify import find, prose_spans

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=4, help="take every n-th file")
    args = parser.parse_args()
    root = Path(next(iter(importlib.util.find_spec("dagster").submodule_search_locations)))
    files = sorted(root.rglob("*.py"))[:: args.every]
    find("x = 1  # Jane Doe\n", "python")  # loads the engines

    start = time.perf_counter()
    found, prose_lines, chars = Counter(), 0, 0
    for path in files:
        text = path.read_text(errors="replace")
        chars += len(text)
        prose_lines += sum(text.count("\n", s, e) + 1 for s, e in prose_spans(text, "python"))
        found.update(text[f.start : f.end] for f in find(text, "python") if f.entity == "PERSON")
    seconds = time.perf_counter() - start

    rng = random.Random(1)
    recall = {}
    for form, template in FORMS.items():
        hits = 0
        for path in rng.sample(files, 40):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            line = template.format(first=first, last=last, lfirst=first.lower(), llast=last.lower())
            text = path.read_text(errors="replace")
            cut = text.find("\n", len(text) // 2) + 1  # in the middle of the file, at a line start
            planted = text[:cut] + line + text[cut:]
            spans = [(f.start, f.end) for f in find(planted, "python") if f.entity == "PERSON"]
            hits += any(s < cut + len(line) and e > cut for s, e in spans)
        recall[form] = hits / 40

    report("deidentify", {
        "files": len(files), "megabytes": round(chars / 2**20, 1), "prose_lines": prose_lines,
        "person_findings": sum(found.values()),
        "person_findings_per_1k_prose_lines": round(1000 * sum(found.values()) / max(1, prose_lines), 2),
        "person_findings_top": dict(found.most_common(15)),
        "seconds": round(seconds, 1), "megabytes_per_s": round(chars / 2**20 / seconds, 2),
        "recall_by_form": recall,
    })


if __name__ == "__main__":
    main()
