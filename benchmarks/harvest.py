"""Harvest throughput: completions/s of `refined_targets` and of `filtered_dataset`, and what a day
of 1M completions would take through both on this machine.

    python benchmarks/harvest.py                              # 200 sessions, ~2,300 completions
    python benchmarks/harvest.py --sessions 4500 --runs 3     # ~50k completions

Simulates one day of sessions on the 95 files of 15–30 KB of the installed `dagster` package (real
code; documents of ~20 KB) with a model-free oracle proposer (the true code for every other
request, nonsense for the rest, so that both decisions happen), ingests it with `raw_sessions`,
then times each stage in a fresh process (peak memory is that process's): `refine_partition`,
`filter_partition` and the asset's PII re-scan (`leaks`). The NER and Presidio engines load before the timed
part (their load time is reported on its own). Medians of the runs; the filter's time share per
filter comes from its clock. Appends the figures to benchmarks/out/harvest.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from report import report

DAY = date(2026, 11, 2)
DAY_OF_COMPLETIONS = 1_000_000


def corpus(folder: Path) -> list[str]:
    """Copies the files of 15–30 KB of the dagster package into `folder`; their texts."""
    root = Path(next(iter(importlib.util.find_spec("dagster").submodule_search_locations)))
    picked = [p for p in sorted(root.rglob("*.py")) if 15_000 <= p.stat().st_size <= 30_000]
    for n, path in enumerate(picked):
        shutil.copy(path, folder / f"f{n:03d}_{path.name}")
    return [p.read_text() for p in picked]


def stage(name: str, db: str) -> dict:
    """Runs one stage over the day in this process; its figures."""
    from echo_dagster import warehouse
    from echo_dagster.filters.checks import leaks
    from echo_dagster.filters.deidentify import find
    from echo_dagster.filters.partition import filter_partition
    from echo_dagster.harvest.partition import refine_partition

    figures = {}
    with warehouse.connect(db) as con:  # as the assets open it
        if name == "refine":
            start = time.perf_counter()
            result = refine_partition(con, DAY)
            figures |= {"seconds": time.perf_counter() - start, "completions": result.completions,
                        "with_target": result.with_target, "by_reason": result.by_reason,
                        "by_source_kind": result.by_source_kind}
        else:
            start = time.perf_counter()
            find("x = 1  # Jane Doe\n", "python")  # loads Presidio and spaCy
            figures["engine_load_s"] = time.perf_counter() - start
            start = time.perf_counter()
            result = filter_partition(con, DAY)
            figures |= {"seconds": time.perf_counter() - start, "completions": result.rows_in,
                        "kept_train": result.kept_train, "kept_eval": result.kept_eval, "dropped": result.dropped,
                        "filter_seconds": result.seconds}
            start = time.perf_counter()
            figures |= {"leaks": len(leaks(con, DAY)), "check_seconds": time.perf_counter() - start}
    figures["peak_mb"] = peak_mb()
    return figures


def peak_mb() -> int:
    """This process's peak resident memory. Not getrusage's ru_maxrss: Linux carries it across exec,
    so a child would report its parent's peak."""
    status = Path("/proc/self/status").read_text()
    return round(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024)


def in_fresh_process(name: str, db: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--stage", name, "--db", str(db)],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def build_day(folder: Path, sessions: int) -> dict:
    import duckdb

    from echo_dagster.ingest.raw_sessions import ingest_partition
    from echo_dagster.landing import LocalLandingStore
    from echo_dagster.simulate.oracle import half_right
    from echo_dagster.simulate.run import SimulationSpec, simulate

    (folder / "source").mkdir()
    texts = corpus(folder / "source")
    users = 10
    spec = SimulationSpec(source=str(folder / "source"), start=DAY, days=1, users=users,
                          sessions_per_user_day=-(-sessions // users), seed=1)
    landing = LocalLandingStore(folder / "landing")
    summary = simulate(spec, landing, LocalLandingStore(folder / "truth"), half_right(texts), "oracle")
    ingest_partition(landing, DAY, folder / "wh.duckdb")
    with duckdb.connect(str(folder / "wh.duckdb"), read_only=True) as con:
        kb, snapshots = con.execute("SELECT avg(length(document)) / 1024, count(*) FROM raw_sessions "
                                    "WHERE event = 'document_snapshot'").fetchone()
    return {"files": len(texts), "sessions": users * spec.sessions_per_user_day, "events": summary.events,
            "snapshots": snapshots, "document_kb_mean": round(kb, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(stage(args.stage, args.db)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        day = build_day(tmp, args.sessions)
        day["build_s"] = round(time.perf_counter() - start)
        db = tmp / "wh.duckdb"
        runs = {"refine": [], "filter": []}
        for _ in range(args.runs):
            runs["refine"].append(in_fresh_process("refine", db))
            runs["filter"].append(in_fresh_process("filter", db))
        day["warehouse_mb"] = round(db.stat().st_size / 2**20)

    def median(key: str, field: str = "seconds") -> float:
        return statistics.median(r[field] for r in runs[key])

    completions = runs["refine"][0]["completions"]
    middle = sorted(runs["filter"], key=lambda r: r["seconds"])[len(runs["filter"]) // 2]
    timed = sum(middle["filter_seconds"].values())
    record = {**day, "completions": completions, "runs": args.runs,
              "refine": {"median_s": round(median("refine"), 2),
                         "completions_per_s": round(completions / median("refine")),
                         "peak_mb": max(r["peak_mb"] for r in runs["refine"]),
                         "by_reason": runs["refine"][0]["by_reason"],
                         "by_source_kind": runs["refine"][0]["by_source_kind"]},
              "filter": {"median_s": round(median("filter"), 2),
                         "completions_per_s": round(completions / median("filter")),
                         "check_median_s": round(median("filter", "check_seconds"), 2),
                         "engine_load_s": round(median("filter", "engine_load_s"), 1),
                         "peak_mb": max(r["peak_mb"] for r in runs["filter"]),
                         # the rest of the time: reading rows and documents, writing the partition
                         "time_share": {k: round(v / middle["seconds"], 3) for k, v in middle["filter_seconds"].items()}
                         | {"read_and_write": round(1 - timed / middle["seconds"], 3)},
                         "kept_train": middle["kept_train"], "kept_eval": middle["kept_eval"],
                         "dropped": middle["dropped"], "leaks": middle["leaks"]}}
    # A day of 1M: both stages and the filter's PII re-scan, each at its measured rate, one core.
    per_completion = (median("refine") + median("filter") + median("filter", "check_seconds")) / completions
    record["day_of_1M_minutes"] = round(DAY_OF_COMPLETIONS * per_completion / 60, 1)
    record["day_of_1M_within_30_min"] = record["day_of_1M_minutes"] < 30
    report("harvest", record)


if __name__ == "__main__":
    main()
