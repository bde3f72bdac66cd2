"""How much of what users kept the importers recover from Continue and Tabby logs, which never
record it: the simulator plays sessions (a model-free oracle proposes, so that both decisions are
common), writes them as schema-v1 logs with snapshots and as Continue- and Tabby-shaped logs, and
each log goes through the importer and the harvest; every target is checked against the
simulator's truth.

    python benchmarks/implicit_snapshots.py --source dagster_shared --days 3 --users 6 --triggers 12
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
from datetime import date
from pathlib import Path

from report import report, table

from echo_dagster.corpus import DEFAULT_CORPUS, scan_source
from echo_dagster.landing import LocalLandingStore
from echo_dagster.simulate.client_logs import measure_recovery
from echo_dagster.simulate.oracle import half_right
from echo_dagster.simulate.run import SimulationSpec, simulate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", default=DEFAULT_CORPUS)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--users", type=int, default=6)
    parser.add_argument("--triggers", type=int, nargs="+", default=[12, 6, 3],
                        help="completions a session (more requests, more later windows)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    texts = [f.text for f in scan_source(args.source).files]
    rows = []
    for triggers in args.triggers:
        spec = SimulationSpec(source=args.source, start=date(2026, 11, 2), days=args.days, users=args.users,
                              triggers_per_session=triggers, seed=args.seed)
        with tempfile.TemporaryDirectory() as folder:
            landing, truth = Path(folder) / "landing", Path(folder) / "truth"
            simulate(spec, LocalLandingStore(landing), LocalLandingStore(truth), half_right(texts), "oracle")
            events = {}
            for f in sorted(landing.rglob("*.jsonl.gz")):
                for line in gzip.open(f):
                    event = json.loads(line)
                    events[event["event_id"]] = event  # the delivery's duplicates dropped
            truth_rows = [json.loads(line) for f in sorted(truth.rglob("*.jsonl")) for line in open(f)]
        figures = measure_recovery(list(events.values()), truth_rows)
        for log, by_decision in figures.items():
            for decision, f in by_decision.items():
                rows.append({"triggers": triggers, "log": log, "decision": decision, **f})
    report("implicit_snapshots", {"source": args.source, "days": args.days, "users": args.users, "rows": rows})
    print(table(["completions a session", "log", "decision", "completions", "with a final state", "right"],
                [[r["triggers"], r["log"], r["decision"], r["completions"], f"{r['share_with_final_state']:.1%}",
                  f"{r['share_right']:.1%}"] for r in rows]))


if __name__ == "__main__":
    main()
