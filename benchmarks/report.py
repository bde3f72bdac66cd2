"""What every benchmark does with its figures: print them and append them to benchmarks/out/<name>.json."""

from __future__ import annotations

import json
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def report(name: str, figures: dict) -> None:
    record = {**figures, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(json.dumps(record, indent=2))
    OUT.mkdir(exist_ok=True)
    with (OUT / f"{name}.json").open("a") as log:
        log.write(json.dumps(record) + "\n")


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table, as the README shows the figures."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])
