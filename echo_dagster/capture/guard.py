"""Connection limits uvicorn lacks: a deadline on each request's arrival, a bound on header bytes, and
a cap on open connections enforced as they are accepted.

uvicorn closes a connection left idle after a response (`timeout_keep_alive`), but a new connection
that sends nothing, or sends its headers a byte at a time, stays open for ever: a few hundred of
them take every file descriptor the server has, with no token needed. uvicorn's
`limit_concurrency` does not help: it is consulted only once a request's headers have arrived, and
it counts idle connections, so at its limit it refuses the requests of legitimate clients while the
slow ones keep their sockets. Hence, in a subclass of uvicorn's own protocol (h11 or httptools):

* **Deadline.** From a connection's opening, and from the first byte of each later request, the
  whole request — headers and body — must arrive within `read_timeout_s`, or the connection is
  closed. Trickling bytes does not extend it. (Idle time between requests is uvicorn's
  `timeout_keep_alive`.) Time the server spends on a request is not counted.
* **Header bytes.** At most `max_header_bytes` before the headers end, else 400 and close (h11 has
  this limit built in; httptools has none).
* **Cap.** At most `max_connections` open. A connection beyond it closes the one that has been
  waiting longest for its client — idle, or sending slowly; a client that sends its request at once
  is never that one — or, where every connection is busy with a request, it is answered 503 and
  closed itself. The cap is kept below the process's file-descriptor limit (`server.serve`), so
  accepting never fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter

log = logging.getLogger("echo_dagster.capture")

_REFUSAL = b"too many connections, each busy with a request: retry in a second\n"
_REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_REFUSAL), _REFUSAL))


class ConnectionStats:
    """Connections the guard closed, by why; logged at most once a second per reason (a flood of
    slow connections must not become a flood of log lines)."""

    def __init__(self):
        self.closed: Counter = Counter()
        self._unlogged: Counter = Counter()
        self._logged_at: dict[str, float] = {}

    def note(self, why: str) -> None:
        self.closed[why] += 1
        self._unlogged[why] += 1
        now = time.monotonic()
        if now - self._logged_at.get(why, float("-inf")) >= 1.0:
            log.info(json.dumps({"msg": "connections closed", "why": why, "count": self._unlogged.pop(why),
                                 "total": self.closed[why]}))
            self._logged_at[why] = now


class _Guard:
    """Mixed into uvicorn's H11Protocol or HttpToolsProtocol by `guarded_protocol`."""

    read_timeout_s: float
    max_connections: int
    max_header_bytes: int
    stats: ConnectionStats

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_since = time.monotonic()
        self._arm()
        if len(self.connections) > self.max_connections:
            others = [c for c in self.connections if isinstance(c, _Guard) and c is not self and c._waiting()]
            if others:
                min(others, key=lambda c: c._waiting_since)._close("evicted_waiting")
            else:
                transport.write(_REFUSED)
                self._close("refused_busy")

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self._waiting():  # the first byte of a request after an idle spell
            self._waiting_since = time.monotonic()
            self._arm()
        super().data_received(data)
        if not self._waiting():
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._waiting_since = time.monotonic()
        # A pipelined request already partly here: its deadline runs now. An idle connection is
        # uvicorn's keep-alive timer's until its next byte.
        cycle = self.cycle
        if not self.transport.is_closing() and cycle is not None and not cycle.response_complete and self._waiting():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _waiting(self) -> bool:
        """Whether the server waits for this client: no request in progress, or one whose headers
        or body have not all arrived."""
        cycle = self.cycle
        return cycle is None or cycle.response_complete or cycle.more_body

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout_s, self._close, "read_timeout")

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _close(self, why: str) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.stats.note(why)
            self.transport.close()


class _HeaderBytes:
    """httptools' parser takes headers of any size: count them, and stop the parser past the limit
    (uvicorn answers a parser error with 400 and closes)."""

    def on_message_begin(self) -> None:
        self._header_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.max_header_bytes:
            self.stats.note("headers_too_large")
            raise ValueError(f"request headers over {self.max_header_bytes} bytes")


def guarded_protocol(kind: str, *, read_timeout_s: float, max_connections: int, max_header_bytes: int,
                     stats: ConnectionStats) -> type:
    """uvicorn's protocol `kind` ("h11", "httptools", or "auto": httptools where it is installed)
    with the guard; pass it as uvicorn's `http`, with `h11_max_incomplete_event_size=max_header_bytes`."""
    if kind == "auto":
        try:
            import httptools  # noqa: F401
        except ImportError:
            kind = "h11"
        else:
            kind = "httptools"
    if kind == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol

        bases: tuple = (_Guard, H11Protocol)
    elif kind == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        bases = (_Guard, _HeaderBytes, HttpToolsProtocol)
    else:
        raise ValueError(f"unknown HTTP implementation {kind!r}: expected auto, h11 or httptools")
    return type(f"Guarded{bases[-1].__name__}", bases, {
        "read_timeout_s": read_timeout_s, "max_connections": max_connections,
        "max_header_bytes": max_header_bytes, "stats": stats})
