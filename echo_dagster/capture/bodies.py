"""What a post's body holds: strict JSON, mapped and validated into the lines the sink writes.

These functions run in the endpoint's worker threads, never on its event loop, and nothing a client
sends makes them raise: every failure is an error entry — line, reason code, field, message — with
the reason codes of `events.REASONS` where the same thing is wrong (`bad_json`, `invalid_utf8`,
`nested_too_deep`, `not_an_object`, the schema's own), plus Continue's mapping problems.

JSON is decoded with msgspec, which is stricter than the standard library where laxness would reach
the landing zone: it refuses NaN and Infinity, numbers no float or 64-bit integer holds, and escapes
of lone UTF-16 surrogates (`"\\ud800"`: the standard library decodes it into a string that cannot be
encoded as UTF-8 again).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import msgspec

from echo_dagster.clients.continue_dev import continue_completion
from echo_dagster.clients.implicit import shown_events
from echo_dagster.clients.records import ClientCompletion, ReadResult
from echo_dagster.events import Event, EventError, parse_event

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class BodyError(ValueError):
    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason, self.message = reason, message

    def entry(self, line: int) -> dict:
        return {"line": line, "reason": self.reason, "field": None, "message": self.message}


@dataclass
class Checked:
    valid: list[tuple[bytes, Event]] = field(default_factory=list)  # the line to write (with "\n"), its event
    errors: list[dict] = field(default_factory=list)  # {"line", "reason", "field", "message"}


def line_count(body: bytes) -> int:
    """Lines the body would be split into (a last line without its newline counts), found without
    parsing anything: a limit on events must be checked before the work they cost is done."""
    return body.count(b"\n") + (0 if body.endswith(b"\n") else 1) if body else 0


def decode(data: bytes) -> object:
    """One JSON value, or BodyError."""
    try:
        return _decoder.decode(data)
    except RecursionError:
        raise BodyError("nested_too_deep", "JSON nested deeper than the decoder's recursion limit "
                                           "(no event nests more than two levels)") from None
    except UnicodeDecodeError as err:
        raise BodyError("invalid_utf8", f"not UTF-8: {err.reason} at byte {err.start}") from None
    except msgspec.DecodeError as exc:  # a ValidationError too: a number out of range
        raise BodyError("bad_json", _why_not_json(data, exc)) from None


_AT_BYTE = re.compile(r"\(byte (\d+)\)")


def _why_not_json(data: bytes, exc: msgspec.DecodeError) -> str:
    text = str(exc)
    if "surrogate" in text:
        return (f"not valid JSON: {text}; an escape \\ud800-\\udfff must be half of a surrogate pair, "
                f"alone it is not a character")
    if isinstance(exc, msgspec.ValidationError):
        return f"not valid JSON here: {text} (numbers must fit a 64-bit integer or a finite double)"
    if "truncated" in text:
        return "not valid JSON: it ends before the value does (an empty or cut body?)"
    at = _AT_BYTE.search(text)
    if at and data[int(at[1]):int(at[1]) + 9].lstrip(b"-").startswith((b"NaN", b"Infinity")):
        return f"not valid JSON: NaN and Infinity are not JSON numbers (byte {at[1]})"
    return f"not valid JSON: {text}"


def schema_v1(body: bytes, tenant: str) -> Checked:
    """A body of `POST /v1/events`: one event however it is laid out, or one event a line. Every
    event's `tenant_id` becomes the token's."""
    lines = body.split(b"\n")
    if sum(1 for line in lines if line.strip()) > 1:
        try:
            whole = _decoder.decode(body)
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            whole = None  # JSON lines, or junk that the lines below will explain
        if isinstance(whole, dict):
            lines = [body]
    checked = Checked()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = decode(line)
        except BodyError as err:
            checked.errors.append(err.entry(n))
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
    line = _encoder.encode(obj)
    try:
        checked.valid.append((line + b"\n", parse_event(line)))
    except EventError as err:
        checked.errors.append({"line": n, "reason": err.reason, "field": err.field, "message": err.message})


@dataclass
class ContinuePost:
    completion: ClientCompletion | None = None
    own: Checked = field(default_factory=Checked)  # its completion_shown and decision
    ignored: bool = False  # another event, or one logged without code
    errors: list[dict] = field(default_factory=list)


def continue_post(body: bytes, tenant: str) -> ContinuePost:
    """A body Continue posts to an HTTP destination."""
    try:
        payload = decode(body)
    except BodyError as err:
        return ContinuePost(errors=[err.entry(1)])
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
