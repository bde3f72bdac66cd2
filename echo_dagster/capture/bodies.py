"""What a post's body holds: strict JSON, mapped and validated into the lines the sink writes.

These functions run in the endpoint's worker threads, never on its event loop, and nothing a client
sends makes them raise: every failure is an error entry — line, reason code, field, message — with
the reason codes of `events.REASONS` where the same thing is wrong (`bad_json`, `invalid_utf8`,
`nested_too_deep`, `not_an_object`, the schema's own), plus Continue's mapping problems.

JSON is decoded by `events.decode_json`, strictly (no lone surrogates, NaN or Infinity), as every
route decodes its body; a line longer than a landing line may be (`events.MAX_LINE_BYTES`) is
refused here (`line_too_long`) rather than written for `raw_sessions` to quarantine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import msgspec

from echo_dagster.clients.continue_dev import continue_completion
from echo_dagster.clients.implicit import shown_events
from echo_dagster.clients.records import ClientCompletion, ReadResult
from echo_dagster.events import MAX_LINE_BYTES, Event, EventError, decode_json, parse_event

_encoder = msgspec.json.Encoder()


def entry(err: EventError, line: int) -> dict:
    """An error entry of an answer: line, reason code, field, message."""
    return {"line": line, "reason": err.reason, "field": err.field, "message": err.message}


@dataclass
class Checked:
    valid: list[tuple[bytes, Event]] = field(default_factory=list)  # the line to write (with "\n"), its event
    errors: list[dict] = field(default_factory=list)  # {"line", "reason", "field", "message"}


def line_count(body: bytes) -> int:
    """Lines the body would be split into (a last line without its newline counts), found without
    parsing anything: a limit on events must be checked before the work they cost is done."""
    return body.count(b"\n") + (0 if body.endswith(b"\n") else 1) if body else 0


def schema_v1(body: bytes, tenant: str) -> Checked:
    """A body of `POST /v1/events`: one event however it is laid out, or one event a line. Every
    event's `tenant_id` becomes the token's."""
    lines = body.split(b"\n")
    if sum(1 for line in lines if line.strip()) > 1:
        try:
            whole = decode_json(body)
        except EventError:
            whole = None  # JSON lines, or junk that the lines below will explain
        if isinstance(whole, dict):
            lines = [body]
    checked = Checked()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = decode_json(line)
        except EventError as err:
            checked.errors.append(entry(err, n))
            continue
        if not isinstance(obj, dict):
            checked.errors.append({"line": n, "reason": "not_an_object", "field": None,
                                   "message": f"expected a JSON object, got {type(obj).__name__}"})
            continue
        obj["tenant_id"] = tenant
        _check(checked, n, obj)
    return checked


def encoded(events: list[dict]) -> Checked:
    """Events made here (Continue's): encoded and validated like a client's."""
    checked = Checked()
    for n, event in enumerate(events, 1):
        _check(checked, n, event)
    return checked


def _check(checked: Checked, n: int, obj: dict) -> None:
    try:
        line = landing_line(obj)
        checked.valid.append((line, parse_event(line[:-1])))
    except EventError as err:
        checked.errors.append(entry(err, n))


@dataclass(frozen=True)
class Subject:
    """Whose an event is, for the opt-out check of a line that is not a valid event."""
    user_id: str | None
    tenant_id: str | None


def made_here(events: list[dict]) -> tuple[list[tuple[bytes, Event | Subject]], list[dict]]:
    """Events the server made (decisions, implicit snapshots, closes): each one's line and event,
    and the problems. One that cannot be a valid landing line is not the reason any other is lost:
    it is written as a line that `raw_sessions` quarantines with its reason (strings escaped as
    ASCII, so that writing it cannot fail too), and listed among the problems for the log."""
    lines, problems = [], []
    for n, event in enumerate(events, 1):
        try:
            line = landing_line(event)
            lines.append((line, parse_event(line[:-1])))
        except EventError as err:
            problems.append({**entry(err, n), "event": event.get("event"), "event_id": _ascii(event.get("event_id")),
                             "tenant_id": _ascii(event.get("tenant_id"))})
            lines.append((json.dumps(event, ensure_ascii=True, default=str).encode() + b"\n",
                           Subject(event.get("user_id"), event.get("tenant_id"))))
    return lines, problems


def _ascii(value: object) -> str:
    return ascii(value)[:120]


def landing_line(obj: dict) -> bytes:
    """The line (with its newline) an event is written as, or EventError where it cannot be one."""
    try:
        line = _encoder.encode(obj)
    except (UnicodeEncodeError, TypeError, OverflowError) as err:  # made here from what a client sent
        raise EventError("bad_field_value", f"cannot be written as JSON: {err}") from None
    if len(line) > MAX_LINE_BYTES:
        raise EventError("line_too_long", f"{len(line)} bytes as a landing line: at most {MAX_LINE_BYTES} "
                                          f"(what raw_sessions reads)")
    return line + b"\n"



@dataclass
class ContinuePost:
    completion: ClientCompletion | None = None
    own: Checked = field(default_factory=Checked)  # its completion_shown and decision
    ignored: bool = False  # another event, or one logged without code
    errors: list[dict] = field(default_factory=list)


def continue_post(body: bytes, tenant: str) -> ContinuePost:
    """A body Continue posts to an HTTP destination."""
    try:
        payload = decode_json(body)
    except EventError as err:
        return ContinuePost(errors=[entry(err, 1)])
    if isinstance(payload, dict) and payload.get("name") not in (None, "autocomplete"):
        return ContinuePost(ignored=True)
    read = ReadResult()
    completion = continue_completion(payload, read, "body")
    if completion is None:
        if read.skipped.get("no_code"):
            return ContinuePost(ignored=True)
        problem = read.problems[0]
        return ContinuePost(errors=[{"line": 1, "reason": problem["reason"], "field": None,
                                     "message": problem["message"]}])
    own = encoded(shown_events(completion, tenant))
    return ContinuePost(completion=completion, own=own, errors=own.errors)
