"""Event schema v1 of the landing zone (DESIGN.md): typed parsing and validation.

One JSON object per line. `parse_event` returns one of the typed event structs or raises
`EventError`, whose `reason` is a stable code (used for quarantine rows and metrics) and whose
message names the field, what was expected and what came.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated, ClassVar, Literal, Union

import msgspec

SCHEMA_VERSION = 1
# The longest landing line, its newline left out: `raw_sessions` quarantines a longer one
# (`line_too_long`), so the capture server writes none longer.
MAX_LINE_BYTES = 4 << 20

NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]  # stored as BIGINT
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]


class _EventBase(msgspec.Struct, tag_field="event", frozen=True, kw_only=True):
    """Fields on every event. Importers of other clients' logs write null where they lack a value
    (only the location fields may be null); every key must be present."""

    schema_version: Literal[1]  # = SCHEMA_VERSION; a line of another version is quarantined
    event_id: NonEmptyStr
    ts: datetime
    session_id: NonEmptyStr
    user_id: NonEmptyStr
    tenant_id: NonEmptyStr
    repo: str | None
    path: str | None
    language: str | None
    client: str | None

    event: ClassVar[str]  # the tag, set below for each event type


class CompletionShown(_EventBase, tag="completion_shown"):
    completion_id: NonEmptyStr
    model: str | None
    cursor: NonNegativeInt | None
    prefix: str
    suffix: str
    proposal: str
    latency_ms: NonNegativeFloat | None


class CompletionAccepted(_EventBase, tag="completion_accepted"):
    completion_id: NonEmptyStr
    accepted_text: str


class CompletionRejected(_EventBase, tag="completion_rejected"):
    completion_id: NonEmptyStr
    reason: Literal["dismissed", "typed_over", "escaped"] | None


class DocumentSnapshot(_EventBase, tag="document_snapshot"):
    document: str
    trigger: Literal["interval", "save", "close"]
    seq: NonNegativeInt


class DocumentClosed(_EventBase, tag="document_closed"):
    pass


Event = Union[CompletionShown, CompletionAccepted, CompletionRejected, DocumentSnapshot, DocumentClosed]
EVENT_TYPES: dict[str, type] = {
    cls.__struct_config__.tag: cls
    for cls in (CompletionShown, CompletionAccepted, CompletionRejected, DocumentSnapshot, DocumentClosed)
}
for _tag, _cls in EVENT_TYPES.items():
    _cls.event = _tag

# Fields whose null the importers use for "the client does not record this"; counted per partition.
NULLABLE_FIELDS = ("repo", "path", "language", "client", "model", "cursor", "latency_ms", "reason")

# Reason codes of lines that are not valid events (quarantine.reason).
REASONS = (
    "line_too_long",
    "nul_byte",
    "invalid_utf8",
    "blank_line",
    "bad_json",
    "nested_too_deep",
    "not_an_object",
    "unsupported_schema_version",
    "unknown_event",
    "missing_field",
    "bad_field_type",
    "bad_field_value",
)

_decoder = msgspec.json.Decoder(Event)
_any_json = msgspec.json.Decoder()
_UTC = timedelta(0)


@dataclass(frozen=True)
class EventError(ValueError):
    reason: str
    message: str
    field: str | None = None

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def decode_json(data: bytes) -> object:
    """One JSON value, decoded strictly, or EventError (`bad_json`, `nested_too_deep`, `invalid_utf8`).

    msgspec is stricter than the standard library where laxness would reach the landing zone: it
    refuses NaN and Infinity, floats beyond a double, and escapes of lone UTF-16 surrogates
    (`"\\ud800"`: `json.loads` decodes it into a string that cannot be encoded as UTF-8 again, so
    it fails later, where a line is written). Every request body is decoded here, once."""
    try:
        return _any_json.decode(data)
    except RecursionError:
        raise EventError("nested_too_deep", "JSON nested deeper than the decoder's recursion limit "
                                            "(no event nests more than two levels)") from None
    except UnicodeDecodeError as err:
        raise EventError("invalid_utf8", f"not UTF-8: {err.reason} at byte {err.start}") from None
    except msgspec.DecodeError as exc:  # a ValidationError too: a number out of range
        raise EventError("bad_json", _why_not_json(data, exc)) from None


_AT_BYTE = re.compile(r"\(byte (\d+)\)")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _why_not_json(data: bytes, exc: msgspec.DecodeError) -> str:
    text = str(exc)
    # msgspec reads a high surrogate's escape followed by no low one as input cut short.
    if "surrogate" in text or ("truncated" in text and _SURROGATE_ESCAPE.search(data)):
        return (f"not valid JSON: {text}; an escape \\ud800-\\udfff must be half of a surrogate pair, "
                f"alone it is not a character")
    if isinstance(exc, msgspec.ValidationError):
        return f"not valid JSON here: {text} (numbers must fit a finite double)"
    if "truncated" in text:
        return "not valid JSON: it ends before the value does (an empty or cut body?)"
    at = _AT_BYTE.search(text)
    if at and data[int(at[1]):int(at[1]) + 9].lstrip(b"-").startswith((b"NaN", b"Infinity")):
        return f"not valid JSON: NaN and Infinity are not JSON numbers (byte {at[1]})"
    return f"not valid JSON: {text}"


def format_ts(at: datetime) -> str:
    """`ts` as the landing zone writes it: RFC 3339, UTC, milliseconds."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def parse_event(line: bytes | str) -> Event:
    """Parse and validate one landing-zone line (without its newline)."""
    try:
        event = _decoder.decode(line)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise _explain(line, exc) from None
    except RecursionError:
        # No event nests deeper than two levels; a line of a thousand brackets is an attack or junk,
        # and must not fail the partition it lands in.
        raise EventError("nested_too_deep", "JSON nested deeper than the decoder's recursion limit") from None
    # The decoder gives "Z", "+00:00" and "-00:00" the timezone.utc singleton: test identity first.
    if event.ts.tzinfo is not timezone.utc and event.ts.utcoffset() != _UTC:
        raise EventError(
            "bad_field_value", f"field 'ts': expected an RFC 3339 timestamp in UTC, got {_show(_raw_ts(line))}", "ts"
        )
    return event


_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_GOT = re.compile(r"^Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`")


def _explain(line: bytes | str, exc: Exception) -> EventError:
    """Turn a decoder error into a reason code and a message naming field, expectation and value.

    Only failing lines take this path, so re-reading the line with `json` here costs nothing in
    the common case."""
    if isinstance(line, bytes):
        if b"\x00" in line:
            return EventError("nul_byte", f"NUL byte at offset {line.index(0)}")
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as err:
            return EventError("invalid_utf8", f"not UTF-8: {err.reason} at byte {err.start}")
    if not line.strip():
        return EventError("blank_line", "empty line")
    if not isinstance(exc, msgspec.ValidationError):  # a ValidationError is also a DecodeError
        return EventError("bad_json", f"not valid JSON: {exc}")
    try:
        obj = json.loads(line)
    except ValueError as err:  # msgspec accepted it as JSON, but be safe
        return EventError("bad_json", f"not valid JSON: {err}")
    except RecursionError:  # a deep value inside an otherwise valid object
        return EventError("nested_too_deep", "JSON nested deeper than the decoder's recursion limit")
    if not isinstance(obj, dict):
        return EventError("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    if "schema_version" in obj and obj["schema_version"] != SCHEMA_VERSION:
        return EventError(
            "unsupported_schema_version",
            f"field 'schema_version': expected {SCHEMA_VERSION}, got {_show(obj['schema_version'])}",
            "schema_version",
        )
    if "event" in obj:
        kind = obj["event"]
        if not isinstance(kind, str):
            return EventError("bad_field_type", f"field 'event': expected str, got {_show(kind)}", "event")
        if kind not in EVENT_TYPES:
            return EventError(
                "unknown_event", f"field 'event': expected one of {sorted(EVENT_TYPES)}, got {_show(kind)}", "event"
            )
    text = str(exc)
    at = _AT.search(text)
    field = at.group(1) if at else None
    head = text[: at.start()] if at else text
    if m := _MISSING.match(head):
        field = m["field"]
        kind = obj.get("event", "event")
        return EventError("missing_field", f"field '{field}': required on {kind} events, missing", field)
    got = _lookup(obj, field)
    if m := _GOT.match(head):
        return EventError(
            "bad_field_type", f"field '{field}': expected {m['expected']}, got {m['got']} {_show(got)}", field
        )
    return EventError("bad_field_value", f"field '{field}': {head[0].lower()}{head[1:]}, got {_show(got)}", field)


def _lookup(obj: dict, field: str | None) -> object:
    if not field:
        return obj
    value: object = obj
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _raw_ts(line: bytes | str) -> object:
    try:
        return json.loads(line).get("ts")
    except (ValueError, RecursionError):
        return None


def _show(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
