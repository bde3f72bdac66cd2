"""What every benchmark does with its figures: print them, append them to benchmarks/out/<name>.json
(ignored by git: every run), each with the commit it was measured at (`echo_dagster.provenance`);
and, for a figure the README quotes, keep its raw scores in benchmarks/results/ (committed)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from echo_dagster.provenance import provenance

OUT = Path(__file__).resolve().parent / "out"
RESULTS = Path(__file__).resolve().parent / "results"


def report(name: str, figures: dict, config: dict | None = None) -> None:
    record = {**figures, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "provenance": provenance(config)}
    print(json.dumps(record, indent=2))
    OUT.mkdir(exist_ok=True)
    with (OUT / f"{name}.json").open("a") as log:
        log.write(json.dumps(record) + "\n")


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table, as the README shows the figures."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def keep_results(name: str, scores: Path) -> Path:
    """Copies a run's raw scores (`evaluation.report.write_scores`) to benchmarks/results/<name>.json."""
    RESULTS.mkdir(exist_ok=True)
    kept = RESULTS / f"{name}.json"
    shutil.copyfile(scores, kept)
    return kept
