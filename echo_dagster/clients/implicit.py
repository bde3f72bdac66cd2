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

import threading
from collections import Counter, defaultdict
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


class LiveStreams:
    """Implicit snapshots for completions that arrive one at a time (Continue's posts to the
    capture endpoint): each new request in a file is matched against the earlier completions of
    that file still open, and a file idle for `idle_close` closes its completions' sessions. In
    memory: a restart loses the snapshots still to come for open files, never an event received."""

    def __init__(self, idle_close: timedelta = IDLE_CLOSE, max_open: int = 64):
        self.idle_close = idle_close
        self.max_open = max_open  # earlier completions kept per file
        self._streams: dict[tuple, list[list]] = {}  # (tenant, stream) -> [[completion, snapshots so far]]
        self._lock = threading.Lock()

    def add(self, c: ClientCompletion, tenant_id: str) -> list[dict]:
        events = shown_events(c, tenant_id)
        with self._lock:
            key = (tenant_id, c.stream)
            stream = self._streams.setdefault(key, [])
            if any(earlier.completion_id == c.completion_id for earlier, _ in stream):
                return events  # posted again (a retry): its snapshots were made the first time
            if stream and c.shown_ts - stream[-1][0].shown_ts >= self.idle_close:
                events += self._close(key, stream[-1][0].shown_ts)
                stream = self._streams.setdefault(key, [])
            for entry in stream:
                earlier, seq = entry
                if c.shown_ts > earlier.decided_ts and (region := locate(earlier, c)) is not None:
                    events.append(snapshot_event(earlier, c, region, seq, tenant_id))
                    entry[1] += 1
            stream.append([c, 0])
            while len(stream) > self.max_open:
                events.append(closed_event(stream.pop(0)[0], c.shown_ts, tenant_id))
        return events

    def sweep(self, now: datetime) -> list[dict]:
        """document_closed for the completions of files idle since `now - idle_close`."""
        with self._lock:
            idle = [key for key, stream in self._streams.items() if now - stream[-1][0].shown_ts >= self.idle_close]
            return [event for key in idle for event in self._close(key, self._streams[key][-1][0].shown_ts)]

    def _close(self, key: tuple, last_request: datetime) -> list[dict]:
        return [closed_event(c, last_request, key[0]) for c, _ in self._streams.pop(key)]
