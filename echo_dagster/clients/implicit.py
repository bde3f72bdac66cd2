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

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from echo_dagster.clients.records import ClientCompletion

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
    session = f"{c.client}:{c.completion_id}"
    common = {"schema_version": 1, "session_id": session, "user_id": c.user_id, "tenant_id": tenant_id,
              "repo": c.repo, "path": c.path, "language": c.language,
              "client": f"{c.client}/{c.client_version}" if c.client_version else c.client}
    events = [{**common, "event": "completion_shown", "event_id": f"{session}:shown", "ts": _ts(c.shown_ts),
               "completion_id": c.completion_id, "model": c.model, "cursor": None, "prefix": c.prefix,
               "suffix": c.suffix, "proposal": c.proposal, "latency_ms": c.latency_ms}]
    if c.decision == "accepted":
        events.append({**common, "event": "completion_accepted", "event_id": f"{session}:decision",
                       "ts": _ts(c.decided_ts), "completion_id": c.completion_id, "accepted_text": c.accepted_text})
    elif c.decision == "rejected":
        events.append({**common, "event": "completion_rejected", "event_id": f"{session}:decision",
                       "ts": _ts(c.decided_ts), "completion_id": c.completion_id, "reason": c.reject_reason})
    for seq, (later, region) in enumerate(snapshots):
        events.append({**common, "event": "document_snapshot", "event_id": f"{session}:after:{later.completion_id}",
                       "ts": _ts(later.shown_ts), "document": c.prefix + region + c.suffix, "trigger": "interval",
                       "seq": seq})
    if closed_at is not None:
        # A moment after the file's last request, so that it follows every snapshot.
        events.append({**common, "event": "document_closed", "event_id": f"{session}:closed",
                       "ts": _ts(max(closed_at, c.decided_ts) + timedelta(milliseconds=1))})
        out.closed += 1
    out.completions += 1
    out.decisions[c.decision or "none"] += 1
    if snapshots:
        out.with_snapshot[c.decision or "none"] += 1
    for event in events:
        out.nulls.update(k for k, v in event.items() if v is None)
    out.events += events


def _ts(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
