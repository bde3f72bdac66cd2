"""How well de-identification does on code: recall on planted secrets and PII, findings on real code
that holds none to speak of, and the person-name detector on its own.

    python benchmarks/deidentify.py                          # all three studies
    python benchmarks/deidentify.py --packages click --every 8

Recall: the seeded planted corpus of the tests (`echo_dagster_tests/planted.py`: 176 values of 22
kinds, 112 secrets and 64 PII items, in realistic files); a value counts when findings cover every
character of it. False positives: every finding in the Python files of installed packages (their
lines counted with comments and docstrings), per entity, per 1,000 lines, with the most frequent
texts found (some are real: an author's name or e-mail in package metadata). Names: every PERSON
finding in every 4th file of the `dagster` package (which names few people in its comments and
strings, by inspection of the findings listed), and recall on names of several origins planted in
typical comment and string forms, one per file, each form counted. Appends the figures to
benchmarks/out/deidentify.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time
from collections import Counter
from pathlib import Path

from report import report, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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
PACKAGES = ("dagster_shared", "requests", "urllib3", "click")


def package_files(name: str) -> list[Path]:
    root = Path(next(iter(importlib.util.find_spec(name).submodule_search_locations)))
    return sorted(root.rglob("*.py"))


def planted_recall() -> dict:
    from echo_dagster.filters.deidentify import find
    from echo_dagster_tests.planted import PII_KINDS, SECRET_KINDS, planted_corpus

    found, planted = Counter(), Counter()
    for f in planted_corpus():
        findings = find(f.text, "python")
        for p in f.plants:
            planted[p.kind] += 1
            found[p.kind] += all(any(x.start <= i < x.end for x in findings) for i in range(p.start, p.end))

    def share(kinds) -> float:
        return round(sum(found[k] for k in kinds) / sum(planted[k] for k in kinds), 3)

    return {"values": sum(planted.values()), "kinds": len(planted), "recall": share(planted),
            "recall_secrets": share(SECRET_KINDS), "recall_pii": share(PII_KINDS),
            "by_kind": {k: f"{found[k]}/{planted[k]}" for k in SECRET_KINDS + PII_KINDS}}


def false_positives(packages, every: int) -> dict:
    from echo_dagster.filters.deidentify import find

    out = {}
    for name in packages:
        files = package_files(name)[::every]
        start = time.perf_counter()
        found, texts, lines, chars = Counter(), Counter(), 0, 0
        for path in files:
            text = path.read_text(errors="replace")
            lines += text.count("\n") + (not text.endswith("\n"))
            chars += len(text)
            for f in find(text, "python"):
                found[f.entity] += 1
                texts[f"{f.entity}: {text[f.start : f.end][:40]}"] += 1
        seconds = time.perf_counter() - start
        out[name] = {"files": len(files), "lines": lines, "findings": sum(found.values()),
                     "per_1k_lines": round(1000 * sum(found.values()) / lines, 2),
                     "per_1k_lines_by_entity": {e: round(1000 * n / lines, 2) for e, n in found.most_common()},
                     "by_entity": dict(found.most_common()), "top": dict(texts.most_common(12)),
                     "seconds": round(seconds, 1), "megabytes_per_s": round(chars / 2**20 / seconds, 2)}
    return out


def names(every: int) -> dict:
    from echo_dagster.filters.deidentify import find, prose_spans

    files = package_files("dagster")[::every]
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
    return {"files": len(files), "megabytes": round(chars / 2**20, 1), "prose_lines": prose_lines,
            "person_findings": sum(found.values()),
            "person_findings_per_1k_prose_lines": round(1000 * sum(found.values()) / max(1, prose_lines), 2),
            "person_findings_top": dict(found.most_common(15)),
            "seconds": round(seconds, 1), "megabytes_per_s": round(chars / 2**20 / seconds, 2),
            "recall_by_form": recall}


def main() -> None:
    from echo_dagster.filters.deidentify import find

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=4, help="names study: take every n-th file of dagster")
    parser.add_argument("--packages", nargs="+", default=list(PACKAGES), help="false-positive study: packages")
    parser.add_argument("--fp-every", type=int, default=1, help="false-positive study: take every n-th file")
    args = parser.parse_args()
    find("x = 1  # Jane Doe\n", "python")  # loads the engines

    recall = planted_recall()
    fps = false_positives(args.packages, args.fp_every)
    print(table(["kind", "found"], [[k, v] for k, v in recall["by_kind"].items()]))
    print(table(["package", "lines", "findings", "per 1,000 lines", "by entity (per 1,000 lines)"],
                [[n, f["lines"], f["findings"], f["per_1k_lines"],
                  ", ".join(f"{e} {v}" for e, v in f["per_1k_lines_by_entity"].items())] for n, f in fps.items()]))
    report("deidentify", {"planted_recall": recall, "false_positives": fps, "names": names(args.every)})


if __name__ == "__main__":
    main()
