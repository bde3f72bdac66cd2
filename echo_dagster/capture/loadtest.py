"""A bounded load and fault test of the capture endpoint, on loopback.

`run_load` runs N clients that post batches of schema-v1 events for a fixed time and retry a batch
until it is acknowledged, as plugins do; `fault` (e.g. kill the server and start it again) runs
once, halfway. `landed_once` then harvests the day with `raw_sessions` and checks that every
acknowledged event is there exactly once.

What an attacker does alongside, to measure what the limits cost the legitimate clients:
`SlowClients` holds connections that send a request a byte at a time (slowloris), `BigPosts`
posts 4 MiB bodies back to back, `continue_posts` sends Continue completions with timestamps far in
the future, each in a file of its own (what used to stay in memory for ever).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import httpx

from echo_dagster.events import format_ts

_PREFIX = "def handler(event, context):\n    payload = json.loads(event['body'])\n" * 8
_SUFFIX = "\n\nif __name__ == '__main__':\n    main()\n" * 4


@dataclass
class LoadResult:
    seconds: float
    acked: set = field(default_factory=set)
    latencies_ms: list = field(default_factory=list)  # of acknowledged requests
    failures: Counter = field(default_factory=Counter)  # what went wrong, retried

    @property
    def events_per_s(self) -> float:
        return len(self.acked) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else 0.0
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[round(q) - 1]

    def as_dict(self) -> dict:
        return {"seconds": round(self.seconds, 2), "acknowledged_events": len(self.acked),
                "requests": len(self.latencies_ms), "events_per_s": round(self.events_per_s, 1),
                "p50_ms": round(self.percentile(50), 2), "p99_ms": round(self.percentile(99), 2),
                "failures_retried": dict(self.failures)}


class LocalServer:
    """`echo-dagster serve` in a child process on a free loopback port, its log in `folder`.
    `options`: more of serve's options; `nofile`: the child's file-descriptor limit."""

    def __init__(self, folder: Path, rate: float = 2000.0, options: tuple = (), nofile: int | None = None):
        self.landing = folder / "landing"
        self.tokens = folder / "tokens.json"
        self.opt_out = folder / "opt_out.txt"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.rate = rate
        self.options = [str(o) for o in options]
        self.nofile = nofile
        self.log_path = folder / "server.log"
        self.log = open(self.log_path, "ab")
        self.process = None

    def start(self) -> "LocalServer":
        env = os.environ | {"ECHO_HOME": str(self.landing.parent), "ECHO_OPT_OUT": str(self.opt_out),
                            "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        limit = None if self.nofile is None else (
            lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile)))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "echo_dagster.cli", "serve", "--port", str(self.port), "--landing",
             str(self.landing), "--tokens", str(self.tokens), "--node", "n1", "--rate", str(self.rate),
             "--capture-only", *self.options],
            env=env, stdout=self.log, stderr=self.log, preexec_fn=limit)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                httpx.get(f"{self.url}/healthz", timeout=1)  # any answer: it is up (a 503 says what it refuses)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"the server did not start: {self.log_path}")

    def health(self, token: str) -> dict:
        """/healthz as the holder of `token` sees it (anonymously, only up or refusing)."""
        return httpx.get(f"{self.url}/healthz", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()

    def rss_mb(self) -> float:
        """The server's resident memory (Linux)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def log_lines(self) -> list[dict]:
        self.log.flush()
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def event(client: int, n: int) -> dict:
    """A completion_shown of a realistic size (about 1 KB: a prompt's window around the cursor)."""
    now = datetime.now(timezone.utc)
    return {"schema_version": 1, "event": "completion_shown", "event_id": f"load-{client}-{n}",
            "ts": format_ts(now),
            "session_id": f"load-{client}-{n // 50}", "user_id": f"user-{client}", "tenant_id": "ignored",
            "repo": "load", "path": f"svc/handler_{client}.py", "language": "python", "client": "loadtest/1",
            "completion_id": f"load-{client}-{n}", "model": "m", "cursor": len(_PREFIX), "prefix": _PREFIX,
            "suffix": _SUFFIX, "proposal": f"return {n}\n", "latency_ms": 120.0}


def run_load(url: str, token: str, *, clients: int = 8, seconds: float = 10.0, batch: int = 20,
             fault: Callable[[], None] | None = None) -> LoadResult:
    result = LoadResult(seconds)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(k: int) -> None:
        n = 0
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0) as http:
            while time.monotonic() < deadline:
                events = [event(k, n + i) for i in range(batch)]
                body = "\n".join(json.dumps(e) for e in events).encode()
                while time.monotonic() < deadline:
                    started = time.perf_counter()
                    try:
                        answer = http.post("/v1/events", content=body,
                                           headers={"Content-Type": "application/x-ndjson"})
                    except httpx.HTTPError as exc:
                        with lock:
                            result.failures[type(exc).__name__] += 1
                        time.sleep(0.05)
                        continue
                    if answer.status_code == 200:
                        with lock:
                            result.latencies_ms.append((time.perf_counter() - started) * 1000)
                            result.acked.update(e["event_id"] for e in events)
                        break
                    with lock:
                        result.failures[f"http_{answer.status_code}"] += 1
                    time.sleep(float(answer.headers.get("Retry-After", "0.05")))
                n += batch

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    if fault:
        threads.append(threading.Thread(target=lambda: (time.sleep(seconds / 2), fault())))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return result


def landed_once(landing: Path, day: date, acked: set, warehouse_path: Path) -> dict:
    """Harvest `day` with raw_sessions and count how the acknowledged events came out."""
    from echo_dagster import warehouse
    from echo_dagster.ingest.raw_sessions import ingest_partition
    from echo_dagster.landing import LocalLandingStore

    ingested = ingest_partition(LocalLandingStore(landing), day, warehouse_path)
    with warehouse.connect(warehouse_path, read_only=True) as con:
        counts = dict(con.execute("SELECT event_id, count(*) FROM raw_sessions WHERE partition_date = $d "
                                  "GROUP BY ALL", {"d": day}).fetchall())
    return {"acknowledged": len(acked), "missing": len(acked - counts.keys()),
            "more_than_once": sum(1 for i in acked if counts.get(i, 0) > 1),
            "landed_unacknowledged": len(counts.keys() - acked), "lines_read": ingested.lines_read,
            "duplicates_dropped": ingested.duplicates, "quarantined": ingested.quarantined}


class SlowClients:
    """`n` connections that send the start of a request, then one more header byte every `every_s`
    seconds, for as long as the server keeps them (slowloris); `closed()` counts those it closed."""

    def __init__(self, port: int, n: int, every_s: float = 1.0):
        self.socks = []
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            sock.setblocking(False)
            self.socks.append(sock)
        self._gone: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, args=(every_s,), daemon=True)
        self._thread.start()

    def _trickle(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            for i, sock in enumerate(self.socks):
                if i in self._gone:
                    continue
                try:
                    if sock.recv(4096) == b"":  # closed by the server (or answered, then closed)
                        self._gone.add(i)
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    self._gone.add(i)
                    continue
                try:
                    sock.send(b"a")
                except OSError:
                    self._gone.add(i)

    def closed(self) -> int:
        return len(self._gone)

    def __enter__(self) -> "SlowClients":
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.socks:
            sock.close()


def big_events_body(size: int = 4 << 20, lines: int = 1000) -> bytes:
    """`lines` valid events filling `size` bytes: the most work one request may ask for."""
    one = len(json.dumps(event(0, 0)))
    pad = "x" * max(0, size // lines - one - 16)
    body = "\n".join(json.dumps(event(9, n) | {"proposal": pad}) for n in range(lines)).encode()
    return body[:size] if len(body) > size else body


def junk_lines_body(size: int = 4 << 20) -> bytes:
    """`{}` lines filling `size` bytes: over a million lines, each an invalid event."""
    return b"{}\n" * (size // 3)


class BigPosts:
    """A thread that posts `body` back to back with the tenant's token until stopped; `answers`
    holds each (status or exception name, seconds)."""

    def __init__(self, url: str, token: str, body: bytes, route: str = "/v1/events"):
        self.answers: list[tuple[str, float]] = []
        self._stop = threading.Event()

        def run() -> None:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
                while not self._stop.is_set():
                    started = time.perf_counter()
                    try:
                        status = str(http.post(route, content=body).status_code)
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    self.answers.append((status, time.perf_counter() - started))

        self._thread = threading.Thread(target=run, daemon=True)

    def __enter__(self) -> "BigPosts":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def continue_body(n: int, *, window_chars: int = 2000, at: datetime | None = None) -> bytes:
    """Continue's post of one completion in a file of its own (`f{n}.py`), with a window of
    `window_chars` and the time `at` (default: the year 2999)."""
    at = at or datetime(2999, 1, 1, tzinfo=timezone.utc)
    half = window_chars // 2
    data = {"completionId": f"future-{n}", "timestamp": at.isoformat(), "accepted": False, "time": 80,
            "prefix": (f"# file {n}\n" + _PREFIX * (half // len(_PREFIX) + 1))[:half],
            "suffix": (_SUFFIX * (half // len(_SUFFIX) + 1))[:half], "completion": "pass\n",
            "modelName": "m", "filepath": f"file:///work/f{n}.py", "userId": "someone"}
    return json.dumps({"name": "autocomplete", "data": data, "schema": "0.2.0", "level": "all"}).encode()


def continue_posts(url: str, token: str, posts: int, *, window_chars: int = 2000) -> Counter:
    """Posts `posts` Continue completions (`continue_body`) one after another; the statuses."""
    statuses: Counter = Counter()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        for n in range(posts):
            statuses[http.post("/v1/continue", content=continue_body(n, window_chars=window_chars)).status_code] += 1
    return statuses
