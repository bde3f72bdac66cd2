"""Clients' completions as schema-v1 events, with *implicit snapshots*.

Neither Continue nor Tabby records what the user kept. But every completion request carries the
document around the cursor as it stood then, so a later request in the same file shows what stands
where an earlier completion was shown. For a completion with window `prefix | suffix`, a later
window that holds the end of `prefix` and, after it, the start of `suffix` (each found exactly
once) shows the region in between as it stood then: `prefix + region + suffix` is a snapshot of
the earlier completion's window, and the harvest aligns it like any other.

A window is not a whole document, and windows of two completions do not share coordinates, so each
completion becomes a session of its own (`<client>:<completion id>`): shown, its decision, its
implicit snapshots, and `document_closed` once the file's requests have stopped for `idle_close`
(the log shows nothing of the file after that). Ids are made from the client's ids, so a re-import
maps to the same events.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from echo_dagster.clients.records import ClientCompletion
from echo_dagster.events import format_ts

ANCHOR_CHARS = (256, 64, 24)  # tried longest first: a longer anchor is less often ambiguous
MIN_ANCHOR_SIGNAL = 8  # non-blank characters an anchor needs to mean anything
IDLE_CLOSE = timedelta(minutes=30)


@dataclass
class Mapped:
    events: list[dict] = field(default_factory=list)
    completions: int = 0
    with_snapshot: Counter = field(default_factory=Counter)  # decision -> completions with an implicit snapshot
    decisions: Counter = field(default_factory=Counter)
    closed: int = 0
    nulls: Counter = field(default_factory=Counter)  # schema field -> events where the client left it null


def to_events(completions: list[ClientCompletion], tenant_id: str, *, log_end: datetime | None = None,
              idle_close: timedelta = IDLE_CLOSE) -> Mapped:
    """`log_end`: the time of the newest record the log holds (default: the newest completion's);
    a file whose last request is not `idle_close` older than it is still being worked on."""
    out = Mapped()
    streams: dict[tuple, list[ClientCompletion]] = defaultdict(list)
    for c in completions:
        streams[c.stream].append(c)
    log_end = log_end or max((c.decided_ts for c in completions), default=None)
    for stream in streams.values():
        stream.sort(key=lambda c: (c.shown_ts, c.completion_id))
        for visit in _visits(stream, idle_close):
            closed = log_end - visit[-1].shown_ts >= idle_close
            for i, completion in enumerate(visit):
                snapshots = [(later, region) for later in visit[i + 1:] if later.shown_ts > completion.decided_ts
                             for region in [locate(completion, later)] if region is not None]
                _emit(out, completion, snapshots, tenant_id, visit[-1].shown_ts if closed else None)
    out.events.sort(key=lambda e: (e["ts"], e["event_id"]))
    return out


def _visits(stream: list[ClientCompletion], idle_close: timedelta) -> list[list[ClientCompletion]]:
    """The stream cut where the file saw no request for `idle_close`."""
    visits = [[stream[0]]]
    for previous, c in zip(stream, stream[1:]):
        if c.shown_ts - previous.shown_ts >= idle_close:
            visits.append([])
        visits[-1].append(c)
    return visits


def locate(completion: ClientCompletion, later: ClientCompletion) -> str | None:
    """What stands in the later request's window between the end of the completion's prefix and
    the start of its suffix, or None where either is not found exactly once in that order. A
    completion at the end of the file (a suffix too short to be an anchor) is bounded by a later
    request followed by the same end of the file: at its cursor."""
    window = later.prefix + later.suffix
    left = _find_unique(window, [completion.prefix[-n:] for n in ANCHOR_CHARS], 0, from_end=True)
    if left is None:
        return None
    if _signal(completion.suffix) < MIN_ANCHOR_SIGNAL:
        same_end = later.suffix.strip() == completion.suffix.strip() and left <= len(later.prefix)
        right = len(later.prefix) if same_end else None
    else:
        right = _find_unique(window, [completion.suffix[:n] for n in ANCHOR_CHARS], left, from_end=False)
    return None if right is None else window[left:right]


def _find_unique(text: str, anchors: list[str], start: int, *, from_end: bool) -> int | None:
    """The end (`from_end`) or the start of the first anchor found exactly once in text[start:]."""
    for anchor in dict.fromkeys(anchors):  # the same anchor twice when the prefix is short
        if _signal(anchor) < MIN_ANCHOR_SIGNAL:
            continue
        at = text.find(anchor, start)
        if at < 0 or text.find(anchor, at + 1) >= 0:
            continue
        return at + len(anchor) if from_end else at
    return None


def _signal(text: str) -> int:
    return sum(not ch.isspace() for ch in text)


def _emit(out: Mapped, c: ClientCompletion, snapshots: list[tuple[ClientCompletion, str]], tenant_id: str,
          closed_at: datetime | None) -> None:
    events = shown_events(c, tenant_id)
    events += [snapshot_event(c, later, region, seq, tenant_id) for seq, (later, region) in enumerate(snapshots)]
    if closed_at is not None:
        events.append(closed_event(c, closed_at, tenant_id))
        out.closed += 1
    out.completions += 1
    out.decisions[c.decision or "none"] += 1
    if snapshots:
        out.with_snapshot[c.decision or "none"] += 1
    for event in events:
        out.nulls.update(k for k, v in event.items() if v is None)
    out.events += events


def _common(c: ClientCompletion, tenant_id: str) -> dict:
    return {"schema_version": 1, "session_id": f"{c.client}:{c.completion_id}", "user_id": c.user_id,
            "tenant_id": tenant_id, "repo": c.repo, "path": c.path, "language": c.language,
            "client": f"{c.client}/{c.client_version}" if c.client_version else c.client}


def shown_events(c: ClientCompletion, tenant_id: str) -> list[dict]:
    """completion_shown and the decision, when the client logged one."""
    common = _common(c, tenant_id)
    session = common["session_id"]
    events = [{**common, "event": "completion_shown", "event_id": f"{session}:shown", "ts": format_ts(c.shown_ts),
               "completion_id": c.completion_id, "model": c.model, "cursor": None, "prefix": c.prefix,
               "suffix": c.suffix, "proposal": c.proposal, "latency_ms": c.latency_ms}]
    if c.decision == "accepted":
        events.append({**common, "event": "completion_accepted", "event_id": f"{session}:decision",
                       "ts": format_ts(c.decided_ts), "completion_id": c.completion_id, "accepted_text": c.accepted_text})
    elif c.decision == "rejected":
        events.append({**common, "event": "completion_rejected", "event_id": f"{session}:decision",
                       "ts": format_ts(c.decided_ts), "completion_id": c.completion_id, "reason": c.reject_reason})
    return events


def snapshot_event(c: ClientCompletion, later: ClientCompletion, region: str, seq: int, tenant_id: str) -> dict:
    common = _common(c, tenant_id)
    return {**common, "event": "document_snapshot", "event_id": f"{common['session_id']}:after:{later.completion_id}",
            "ts": format_ts(later.shown_ts), "document": c.prefix + region + c.suffix, "trigger": "interval", "seq": seq}


def closed_event(c: ClientCompletion, last_request: datetime, tenant_id: str) -> dict:
    common = _common(c, tenant_id)
    # A moment after the file's last request, so that it follows every snapshot.
    return {**common, "event": "document_closed", "event_id": f"{common['session_id']}:closed",
            "ts": format_ts(max(last_request, c.decided_ts) + timedelta(milliseconds=1))}


@dataclass
class _Open:
    """A completion whose file may still show what became of it."""
    completion: ClientCompletion
    key: tuple  # (tenant, stream)
    cost: int  # bytes it holds, as `_cost` counts them
    snapshots: int = 0


@dataclass
class _Stream:
    open: list[_Open] = field(default_factory=list)  # oldest first
    last_seen: float = 0.0  # the server's clock (`clock`) at its latest request


class LiveStreams:
    """Implicit snapshots for completions that arrive one at a time (Continue's posts to the
    capture endpoint, the completions it serves): each new request in a file is matched against the
    earlier completions of that file still open, and a file idle for `idle_close` closes its
    completions' sessions. In memory: a server that stops closes them all (nothing more can reach
    them); one that dies loses the snapshots still to come for open files, never an event received.

    What a client sends cannot make this grow without bound or keep anything for ever:

    * idleness is measured by the server's clock, never the client's (a timestamp in the year 9000
      would otherwise keep its file open for ever);
    * open completions are bounded by the memory their texts hold, per tenant (`tenant_bytes`) and
      in all (`total_bytes`): past either, the oldest open ones (by arrival) are closed;
    * a completion whose window exceeds `max_window_chars` (Continue's is about 2,000) takes no part
      in snapshots: it would cost memory, and time to search, out of proportion to what it can give;
    * at most `max_open` completions stay open per file.
    """

    def __init__(self, idle_close: timedelta = IDLE_CLOSE, max_open: int = 64, *, tenant_bytes: int = 16 << 20,
                 total_bytes: int = 128 << 20, max_window_chars: int = 64 << 10,
                 clock: Callable[[], float] = time.monotonic):
        self.idle_close = idle_close
        self.max_open = max_open  # earlier completions kept per file
        self.tenant_bytes, self.total_bytes, self.max_window_chars = tenant_bytes, total_bytes, max_window_chars
        self.clock = clock
        self._streams: dict[tuple, _Stream] = {}  # (tenant, stream) -> its open completions
        # Every open completion, oldest first: all of them, and each tenant's.
        self._all: OrderedDict[int, _Open] = OrderedDict()
        self._by_tenant: dict[str, OrderedDict[int, _Open]] = {}
        self._held: Counter = Counter()  # tenant -> bytes
        self._total = 0
        self._lock = threading.Lock()

    def add(self, c: ClientCompletion, tenant_id: str) -> tuple[list[dict], list[dict]]:
        """(the events this request makes: its completion's, the snapshots it gives earlier
        completions of its file, the closes of those its file no longer keeps; the closes of open
        completions, of any file or tenant, that had to make room for it)."""
        events = shown_events(c, tenant_id)
        cost = _cost(c)
        if len(c.prefix) + len(c.suffix) > self.max_window_chars or cost > min(self.tenant_bytes, self.total_bytes):
            return events, []
        evicted = []
        with self._lock:
            key = (tenant_id, c.stream)
            stream = self._streams.get(key)
            if stream is not None and any(o.completion.completion_id == c.completion_id for o in stream.open):
                return events, []  # posted again (a retry): its snapshots were made the first time
            if stream is not None and c.shown_ts - stream.open[-1].completion.shown_ts >= self.idle_close:
                events += self._close_stream(key)  # a new visit to the file, by the client's own clock
                stream = None
            if stream is None:
                stream = self._streams[key] = _Stream()
            for entry in stream.open:
                earlier = entry.completion
                if c.shown_ts > earlier.decided_ts and (region := locate(earlier, c)) is not None:
                    events.append(snapshot_event(earlier, c, region, entry.snapshots, tenant_id))
                    entry.snapshots += 1
            stream.last_seen = self.clock()
            entry = _Open(c, key, cost)
            stream.open.append(entry)
            self._all[id(entry)] = entry
            self._by_tenant.setdefault(tenant_id, OrderedDict())[id(entry)] = entry
            self._held[tenant_id] += cost
            self._total += cost
            while len(stream.open) > self.max_open:
                events.append(self._close(stream.open[0], c.shown_ts))
            while self._held[tenant_id] > self.tenant_bytes:
                evicted.append(self._evict(next(iter(self._by_tenant[tenant_id].values()))))
            while self._total > self.total_bytes:
                evicted.append(self._evict(next(iter(self._all.values()))))
        return events, evicted

    def sweep(self, everything: bool = False) -> list[dict]:
        """document_closed for the completions of files that saw no request for `idle_close`, by the
        server's clock; of every file with `everything` (a server that stops: nothing more can come)."""
        deadline = float("inf") if everything else self.clock() - self.idle_close.total_seconds()
        with self._lock:
            idle = [key for key, stream in self._streams.items() if stream.last_seen <= deadline]
            return [event for key in idle for event in self._close_stream(key)]

    def stats(self, tenant_id: str | None = None) -> dict:
        """Files, completions and bytes open: in all, or of one tenant."""
        with self._lock:
            if tenant_id is None:
                return {"files": len(self._streams), "completions": len(self._all), "bytes": self._total}
            return {"files": sum(key[0] == tenant_id for key in self._streams),
                    "completions": len(self._by_tenant.get(tenant_id, ())), "bytes": self._held.get(tenant_id, 0)}

    def discard(self, c: ClientCompletion, tenant_id: str) -> None:
        """Forgets an open completion without closing it: one whose own events were never written."""
        with self._lock:
            stream = self._streams.get((tenant_id, c.stream))
            for entry in list(stream.open) if stream is not None else ():
                if entry.completion.completion_id == c.completion_id:
                    self._close(entry, c.shown_ts)

    def _close_stream(self, key: tuple) -> list[dict]:
        stream = self._streams[key]
        last_request = stream.open[-1].completion.shown_ts
        return [self._close(entry, last_request) for entry in list(stream.open)]

    def _evict(self, entry: _Open) -> dict:
        stream = self._streams[entry.key]
        return self._close(entry, stream.open[-1].completion.shown_ts)

    def _close(self, entry: _Open, last_request: datetime) -> dict:
        """Forget one open completion; its document_closed."""
        tenant_id = entry.key[0]
        stream = self._streams[entry.key]
        stream.open.remove(entry)
        if not stream.open:
            del self._streams[entry.key]
        del self._all[id(entry)]
        del self._by_tenant[tenant_id][id(entry)]
        if not self._by_tenant[tenant_id]:
            del self._by_tenant[tenant_id]
        self._held[tenant_id] -= entry.cost
        self._total -= entry.cost
        if not self._held[tenant_id]:
            del self._held[tenant_id]
        return closed_event(entry.completion, last_request, tenant_id)


def _cost(c: ClientCompletion) -> int:
    """What an open completion holds: its strings, and about 1 KiB of objects around them."""
    return 1024 + sum(sys.getsizeof(v) for v in vars(c).values() if isinstance(v, str))
