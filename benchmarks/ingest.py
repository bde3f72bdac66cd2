"""Ingestion throughput: `raw_sessions`' work against DuckDB's bare `read_json` scan of the same files.

    python benchmarks/ingest.py                      # 1M events, 3 runs each (make bench-ingest)
    python benchmarks/ingest.py --events 250000 --runs 5

Generates one day of schema-v1 events (with 5% of them delivered a day late, so the partition also
reads the next day's folder, 2% duplicates and a few bad lines) once under benchmarks/out/, then
alternates the two contenders, each in a fresh process so that its peak memory can be read.
All read the same files: the baseline materializes every column of every line into an in-memory
DuckDB table; a second reference does the same into a DuckDB file (the cost of persisting alone);
`raw_sessions` validates every line, quarantines, deduplicates, orders and writes a DuckDB file.
Prints medians and the ratios, and appends them to benchmarks/out/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from report import OUT, report

DAY = date(2026, 11, 2)
EVENTS_PER_SESSION = 13  # 3 completions x (shown, decision, 2 snapshots) + close
CHUNK_SESSIONS = 10_000  # the generator holds one chunk in memory at a time


def generate(events: int) -> tuple[Path, int]:
    from echo_dagster.landing import LocalLandingStore
    from echo_dagster.landing_fixtures import FixtureSpec, write_landing_fixtures

    root = OUT / f"ingest-{events}"
    done = root / "lines.json"
    if done.exists():
        return root / "landing", json.loads(done.read_text())["lines"]
    shutil.rmtree(root, ignore_errors=True)
    store = LocalLandingStore(root / "landing")
    sessions = -(-events // EVENTS_PER_SESSION)
    lines = 0
    for chunk, start in enumerate(range(0, sessions, CHUNK_SESSIONS)):
        spec = FixtureSpec(days=(DAY,), sessions_per_day=min(CHUNK_SESSIONS, sessions - start), seed=chunk,
                           late_share=0.05, duplicate_share=0.02, bad_lines_per_day=10, files_per_day=2,
                           long_line_bytes=5 << 20, label=f"b{chunk:03d}")
        expected = write_landing_fixtures(store, spec)
        lines += sum(e.lines for e in expected.values())
    done.write_text(json.dumps({"lines": lines}))
    return root / "landing", lines


def _duckdb_scan(landing: str, queue, database: str = ":memory:") -> None:
    import duckdb

    start = time.perf_counter()
    con = duckdb.connect(database)
    con.execute(
        f"CREATE TABLE events AS SELECT * FROM read_json('{landing}/*/*.jsonl*', format='newline_delimited', "
        "union_by_name=true, ignore_errors=true, maximum_object_size=16777216)"
    )
    if database != ":memory:":
        con.execute("CHECKPOINT")  # on disk; an in-memory checkpoint would compress, which a bare scan does not
    elapsed = time.perf_counter() - start
    rows = con.execute("SELECT count(*) FROM events").fetchone()[0]
    queue.put((elapsed, f"{rows} rows", _peak_mb()))


def _duckdb_scan_to_file(landing: str, queue) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _duckdb_scan(landing, queue, str(Path(tmp) / "events.duckdb"))


def _raw_sessions(landing: str, queue) -> None:
    from echo_dagster.ingest.raw_sessions import ingest_partition
    from echo_dagster.landing import LocalLandingStore

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = ingest_partition(LocalLandingStore(landing), DAY, Path(tmp) / "wh.duckdb")
        elapsed = time.perf_counter() - start
    queue.put((elapsed, f"{result.kept} kept, {result.quarantined} quarantined", _peak_mb()))


def _peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, workers) / 1024, 1)  # KiB on Linux


def measure(target, landing: Path) -> tuple[float, str, float]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=target, args=(str(landing), queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    landing, lines = generate(args.events)
    size_mb = sum(f.stat().st_size for f in landing.rglob("*") if f.is_file()) / 2**20
    print(f"{lines} lines, {size_mb:.0f} MiB in {landing}")
    contenders = {"duckdb_read_json": _duckdb_scan, "duckdb_read_json_to_file": _duckdb_scan_to_file,
                  "raw_sessions": _raw_sessions}
    runs: dict[str, list] = {name: [] for name in contenders}
    for run in range(args.runs):
        for name, target in contenders.items():
            seconds, what, peak = measure(target, landing)
            runs[name].append((seconds, peak))
            print(f"run {run + 1} {name:24s} {seconds:7.2f} s  {lines / seconds:10,.0f} lines/s  "
                  f"peak {peak:7.1f} MiB  ({what})")
    summary = {
        name: {
            "median_s": round(statistics.median(s for s, _ in values), 2),
            "lines_per_s": round(lines / statistics.median(s for s, _ in values)),
            "peak_mb": max(p for _, p in values),
        }
        for name, values in runs.items()
    }
    ours = summary["raw_sessions"]["lines_per_s"]
    record = {"events": lines, "size_mb": round(size_mb), "runs": args.runs,
              "ratio": round(ours / summary["duckdb_read_json"]["lines_per_s"], 3),
              "ratio_to_file": round(ours / summary["duckdb_read_json_to_file"]["lines_per_s"], 3), **summary}
    report("ingest", record)


if __name__ == "__main__":
    main()
