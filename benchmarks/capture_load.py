"""The capture endpoint under load, on loopback: N clients post batches of ~1 KB schema-v1 events
for a fixed time (each retrying a batch until it is acknowledged); with `--kill`, the server is
killed (SIGKILL) halfway and started again. Then `raw_sessions` harvests the day and every
acknowledged event must be there exactly once.

    python benchmarks/capture_load.py --clients 8 --seconds 20 --batch 20 [--kill]
"""

from __future__ import annotations

import argparse
import signal
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from echo_dagster.capture.loadtest import LocalServer, landed_once, run_load
from echo_dagster.capture.tokens import TokenStore
from report import report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=20, help="events a request")
    parser.add_argument("--kill", action="store_true", help="kill -9 the server halfway and restart it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="echo-capture-") as folder:
        server = LocalServer(Path(folder), rate=1e9)
        token = TokenStore(server.tokens).add("bench")
        server.start()

        def kill_and_restart():
            server.stop(signal.SIGKILL)
            server.start()

        try:
            result = run_load(server.url, token, clients=args.clients, seconds=args.seconds, batch=args.batch,
                              fault=kill_and_restart if args.kill else None)
        finally:
            server.stop()
        check = landed_once(server.landing, datetime.now(timezone.utc).date(), result.acked,
                            Path(folder) / "wh.duckdb")
    report("capture_load", {"clients": args.clients, "batch": args.batch, "kill": args.kill, **result.as_dict(),
                            "landing_check": check})


if __name__ == "__main__":
    main()
