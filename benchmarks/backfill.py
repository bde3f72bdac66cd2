"""A backfill of the harvest partitions with several workers, on the DuckDB file and on the Parquet
warehouse.

The simulator writes `--days` days (a model-free oracle proposes, `--users` × `--sessions`
sessions a day); then each configuration materializes every day's `raw_sessions` and
`refined_targets` as one run per partition (`dagster asset materialize`, the multiprocess executor,
one process per run as a run launcher would start it), `--workers` runs at a time, and then
`filtered_dataset` day after day, as its dependency on its previous partition makes a backfill do;
each on a fresh warehouse and Dagster instance. Reports wall time, partitions per hour and per hour per worker, medians of `--runs`.

    python benchmarks/backfill.py --days 4 --users 6 --sessions 4 --workers 1 2 --runs 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
from report import report, table

from echo_dagster.corpus import DEFAULT_CORPUS, scan_source
from echo_dagster.landing import LocalLandingStore
from echo_dagster.simulate.oracle import half_right
from echo_dagster.simulate.run import SimulationSpec, simulate

REPO = Path(__file__).resolve().parents[1]


def backfill(folder: Path, landing: Path, warehouse: str, days: list[date], workers: int) -> float:
    home = folder / "dagster"
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)):  # its storage made once, as `make instance` does
        pass
    env = os.environ | {"DAGSTER_HOME": str(home), "ECHO_HOME": str(folder), "ECHO_LANDING": str(landing),
                        "ECHO_WAREHOUSE": warehouse, "PYTHONPATH": str(REPO)}
    dagster = Path(sys.executable).parent / "dagster"

    def run(day: date, assets: str) -> None:
        done = subprocess.run([str(dagster), "asset", "materialize", "-m", "echo_dagster.definitions",
                               "--select", assets, "--partition", day.isoformat()], env=env, capture_output=True,
                              text=True)
        if done.returncode:
            raise RuntimeError(f"{day}: {done.stderr[-3000:]}")

    started = time.perf_counter()
    # As a Dagster backfill orders them: the days' sessions and targets at once, then the filter
    # day after day (filtered_dataset depends on its previous partition: dedup against history).
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda day: run(day, "raw_sessions,refined_targets"), days))
    for day in days:
        run(day, "filtered_dataset")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--users", type=int, default=6)
    parser.add_argument("--sessions", type=int, default=4, help="sessions per user and day")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="echo-backfill-") as tmp:
        tmp = Path(tmp)
        start = date(2026, 11, 2)
        spec = SimulationSpec(source=DEFAULT_CORPUS, start=start, days=args.days, users=args.users,
                              sessions_per_user_day=args.sessions, seed=0)
        summary = simulate(spec, LocalLandingStore(tmp / "landing"), LocalLandingStore(tmp / "truth"),
                           half_right([f.text for f in scan_source(DEFAULT_CORPUS).files]), "oracle")
        days = [start + timedelta(days=n) for n in range(args.days)]
        print(f"{args.days} days, {summary.completions} completions, {summary.events} events", flush=True)
        rows = []
        for storage in ("duckdb", "parquet"):
            for workers in args.workers:
                times = []
                for n in range(args.runs):
                    folder = tmp / f"{storage}-{workers}-{n}"
                    target = str(folder / "echo.duckdb") if storage == "duckdb" else f"parquet:{folder / 'pq'}"
                    times.append(backfill(folder, tmp / "landing", target, days, workers))
                    shutil.rmtree(folder)
                seconds = statistics.median(times)
                per_hour = args.days / seconds * 3600
                rows.append({"storage": storage, "workers": workers, "seconds": round(seconds, 1),
                             "partitions_per_hour": round(per_hour), "per_worker": round(per_hour / workers)})
                print(rows[-1], flush=True)
    base = next(r for r in rows if r["storage"] == "duckdb" and r["workers"] == min(args.workers))
    for r in rows:
        r["ratio"] = round(base["seconds"] / r["seconds"], 2)
    report("backfill", {"days": args.days, "completions": summary.completions, "runs": args.runs, "rows": rows})
    print(table(["warehouse", "workers", "wall time", "partitions/hour", "per worker", "vs DuckDB file, 1 worker"],
                [[r["storage"], r["workers"], f"{r['seconds']} s", r["partitions_per_hour"], r["per_worker"],
                  f"{r['ratio']:.2f}×"] for r in rows]))


if __name__ == "__main__":
    main()
