"""The capture endpoint under load and attack, on loopback.

    python benchmarks/capture_load.py --clients 8 --seconds 20 --batch 20 [--kill]

N clients post batches of ~1 KB schema-v1 events for a fixed time (each retrying a batch until it
is acknowledged); with `--kill`, the server is killed (SIGKILL) halfway and started again. Then
`raw_sessions` harvests the day and every acknowledged event must be there exactly once.

The same load, with an attacker alongside (the load's p50/p99 are what the limits protect):

    --slow 300 --nofile 256      300 connections sending a request a byte a second (slowloris), the
                                 server limited to 256 file descriptors
    --big events | junk          4 MiB posts back to back: 1,000 valid events of 4 KiB (the most
                                 work a request may ask for), or 1.4 million `{}` lines

And without the load, the server's memory after Continue posts with timestamps in the year 2999,
each in a file of its own:

    --continue-posts 2000 --window 60000

`--server-arg=--read-timeout-s=10` (repeatable) passes options to `echo-dagster serve`.
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from report import report

from echo_dagster.capture.loadtest import (
    BigPosts,
    LocalServer,
    SlowClients,
    big_events_body,
    continue_posts,
    junk_lines_body,
    landed_once,
    run_load,
)
from echo_dagster.capture.tokens import TokenStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=20, help="events a request")
    parser.add_argument("--kill", action="store_true", help="kill -9 the server halfway and restart it")
    parser.add_argument("--slow", type=int, default=0, help="slowloris connections held during the load")
    parser.add_argument("--nofile", type=int, default=None, help="the server's file-descriptor limit")
    parser.add_argument("--big", choices=("events", "junk"), default=None, help="4 MiB posts during the load")
    parser.add_argument("--continue-posts", type=int, default=0, help="Continue posts dated 2999 (no load)")
    parser.add_argument("--window", type=int, default=2000, help="their window, in characters")
    parser.add_argument("--server-arg", action="append", default=[], help="an option of echo-dagster serve")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="echo-capture-") as folder:
        server = LocalServer(Path(folder), rate=1e9, options=args.server_arg, nofile=args.nofile)
        token = TokenStore(server.tokens).add("bench")
        server.start()
        try:
            if args.continue_posts:
                figures = continue_memory(server, token, args.continue_posts, args.window)
            else:
                figures = load(server, token, args, Path(folder))
        finally:
            server.stop()
    report("capture_load", {"clients": args.clients, "batch": args.batch, "kill": args.kill, "slow": args.slow,
                            "nofile": args.nofile, "big": args.big, "server_args": args.server_arg, **figures})


def load(server: LocalServer, token: str, args, folder: Path) -> dict:
    def kill_and_restart():
        server.stop(signal.SIGKILL)
        server.start()

    def run():
        return run_load(server.url, token, clients=args.clients, seconds=args.seconds, batch=args.batch,
                        fault=kill_and_restart if args.kill else None)

    attack: dict = {}
    if args.slow:
        with SlowClients(server.port, args.slow) as slow:
            time.sleep(1)  # all of them connected and waiting before the load begins
            result = run()
            attack = {"slow_connections_closed": slow.closed()}
    elif args.big:
        body = big_events_body() if args.big == "events" else junk_lines_body()
        with BigPosts(server.url, token, body) as big:
            result = run()
        seconds = sorted(s for _, s in big.answers)
        attack = {"big_posts": len(big.answers), "big_statuses": sorted({status for status, _ in big.answers}),
                  "big_post_median_s": round(seconds[len(seconds) // 2], 3) if seconds else None}
    else:
        result = run()
    server.stop()
    check = landed_once(server.landing, datetime.now(timezone.utc).date(), result.acked, folder / "wh.duckdb")
    return {**result.as_dict(), **attack, "landing_check": check}


def continue_memory(server: LocalServer, token: str, posts: int, window: int) -> dict:
    before = server.rss_mb()
    started = time.perf_counter()
    statuses = continue_posts(server.url, token, posts, window_chars=window)
    seconds = time.perf_counter() - started
    after = server.rss_mb()
    health = server.health(token)
    return {"continue_posts": posts, "window_chars": window, "statuses": dict(statuses),
            "posts_per_s": round(posts / seconds, 1), "rss_before_mb": round(before, 1),
            "rss_after_mb": round(after, 1), "rss_growth_mb": round(after - before, 1),
            "open_completions": health.get("open_completions")}


if __name__ == "__main__":
    main()
