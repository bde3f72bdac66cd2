"""Harvest throughput: completions/s of `refined_targets` (alignment through snapshots + trimming).

    python benchmarks/harvest.py                          # ~2,000 completions on ~20 KB documents
    python benchmarks/harvest.py --sessions 600 --runs 5

Simulates sessions on real files of 15–30 KB (from the installed `dagster` package) with a model-free
proposer (the harvest does the same work whatever was proposed), ingests them with `raw_sessions`,
then times `refine_partition` over the day, in this process (one core), median of several runs,
with its peak memory. Appends the figures to benchmarks/out/harvest.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import shutil
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from report import report

DAY = date(2026, 11, 2)


def corpus(folder: Path, count: int) -> Path:
    """Copies `count` files of 15–30 KB of the dagster package: real code, documents of ~20 KB."""
    root = Path(next(iter(importlib.util.find_spec("dagster").submodule_search_locations)))
    picked = [p for p in sorted(root.rglob("*.py")) if 15_000 <= p.stat().st_size <= 30_000][:count]
    for n, path in enumerate(picked):
        shutil.copy(path, folder / f"f{n:03d}_{path.name}")
    return folder


def main() -> None:
    import duckdb

    from echo_dagster.harvest.partition import refine_partition
    from echo_dagster.ingest.raw_sessions import ingest_partition
    from echo_dagster.landing import LocalLandingStore
    from echo_dagster.simulate.run import SimulationSpec, simulate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "source").mkdir()
        source = corpus(tmp / "source", 60)
        users = 10
        spec = SimulationSpec(source=str(source), start=DAY, days=1, users=users,
                              sessions_per_user_day=-(-args.sessions // users), seed=1)
        landing = LocalLandingStore(tmp / "landing")
        summary = simulate(spec, landing, LocalLandingStore(tmp / "truth"), lambda reqs: ["pass\n"] * len(reqs),
                           "none")
        db = tmp / "wh.duckdb"
        ingest_partition(landing, DAY, db)
        with duckdb.connect(str(db)) as con:
            doc_kb = con.execute("SELECT avg(length(document)) / 1024 FROM raw_sessions "
                                 "WHERE event = 'document_snapshot'").fetchone()[0]
            snapshots = con.execute("SELECT count(*) FROM raw_sessions WHERE event = 'document_snapshot'").fetchone()[0]
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                result = refine_partition(con, DAY)
                times.append(time.perf_counter() - start)
    median = statistics.median(times)
    record = {
        "completions": result.completions, "with_target": result.with_target, "snapshots": snapshots,
        "document_kb_mean": round(doc_kb, 1), "runs": args.runs, "median_s": round(median, 3),
        "completions_per_s_per_core": round(result.completions / median),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "simulated_events": summary.events,
    }
    report("harvest", record)


if __name__ == "__main__":
    main()
