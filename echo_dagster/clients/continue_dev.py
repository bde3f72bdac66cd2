"""Continue's development data: `autocomplete` events, schema 0.2.0.

Continue appends one JSON object a line to `~/.continue/dev_data/0.2.0/autocomplete.jsonl` for
every completion it displayed, once its outcome is known (`accepted` true, or false when it was not
taken), and can post the same object to an HTTP destination wrapped as
`{"name", "data", "schema", "level", "profileId"}`. The fields used here: `completionId`,
`timestamp` (ISO 8601, when the outcome was logged), `accepted`, `time` (ms to generate), `prefix`
and `suffix` (Continue's window around the cursor), `completion`, `modelName`, `filepath` (a file
URI), `gitRepo`, `userId` or `uniqueId`, `userAgent`. What it does not record — why a proposal was
not taken, a partial accept, the cursor's offset in the file — stays null.
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Iterable
from datetime import datetime, timezone

from echo_dagster.clients.records import ClientCompletion, ReadResult, language_of, local_path, pseudonym

CLIENT = "continue"
# Timestamps outside these are a client's bug or an attack: before 1970 no IDE logged, and every
# time derived from a timestamp (a session's close, 30 minutes of idleness) must stay a datetime
# that schema v1's four-digit RFC 3339 years can write.
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9999, 1, 1, tzinfo=timezone.utc)
_REQUIRED = {"completionId": str, "timestamp": str, "prefix": str, "suffix": str, "completion": str}
_OPTIONAL = {"accepted": bool, "time": (int, float), "modelName": str, "filepath": str, "gitRepo": str,
             "userId": str, "uniqueId": str, "userAgent": str}


def read_continue(lines: Iterable[tuple[str, str | bytes]]) -> ReadResult:
    """`lines`: (where, line) pairs, `where` naming the file and line for the summary."""
    result = ReadResult()
    seen: set[str] = set()
    for where, line in lines:
        result.lines += 1
        if not line.strip():
            result.skip("blank_line", where, "empty line")
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            result.skip("bad_json", where, f"not valid JSON: {exc}")
            continue
        completion = continue_completion(obj, result, where)
        if completion is None:
            continue
        if completion.completion_id in seen:
            result.skip("duplicate_completion", where, f"completionId {completion.completion_id!r} logged before")
            continue
        seen.add(completion.completion_id)
        result.completions.append(completion)
    return result


def continue_completion(obj: object, result: ReadResult, where: str) -> ClientCompletion | None:
    """One event — a line of the local file or the body of an HTTP-destination post — or None
    after recording in `result` why it cannot be used."""
    if isinstance(obj, dict) and "name" in obj and "data" in obj and not isinstance(obj["data"], dict):
        result.skip("bad_field_type", where, f"field 'data': expected an object, got {_show(obj['data'])}")
        return None
    if isinstance(obj, dict) and isinstance(obj.get("data"), dict) and "name" in obj:
        if obj.get("level") == "noCode":
            result.skip("no_code", where, "logged at level noCode: no prefix, suffix or completion")
            return None
        obj = {"eventName": obj["name"], **obj["data"]}
    if not isinstance(obj, dict):
        result.skip("not_an_object", where, f"expected a JSON object, got {type(obj).__name__}")
        return None
    if obj.get("eventName", "autocomplete") != "autocomplete":
        result.skip("other_event", where, f"eventName {_show(obj.get('eventName'))} is not autocomplete")
        return None
    for name, kind in (_REQUIRED | _OPTIONAL).items():
        value = obj.get(name)
        if value is None:
            if name in _REQUIRED:
                result.skip("missing_field", where, f"field {name!r}: required, missing")
                return None
        elif not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            result.skip("bad_field_type", where, f"field {name!r}: expected {_name(kind)}, got {_show(value)}")
            return None
    ts = _utc(obj["timestamp"])
    if ts is None:
        result.skip("bad_field_value", where, f"field 'timestamp': expected ISO 8601 between {EARLIEST.year} and "
                                              f"{LATEST.year - 1}, got {_show(obj['timestamp'])}")
        return None
    accepted = obj.get("accepted")
    if accepted is None:
        result.inferred["no_outcome"] += 1
    path = local_path(obj.get("filepath"))
    return ClientCompletion(
        client=CLIENT, completion_id=obj["completionId"], shown_ts=ts, decided_ts=ts,
        user_id=pseudonym(CLIENT, obj.get("userId") or obj.get("uniqueId")), path=path, repo=obj.get("gitRepo"),
        language=language_of(path), client_version=obj.get("userAgent"), model=obj.get("modelName"),
        prefix=obj["prefix"], suffix=obj["suffix"], proposal=obj["completion"], latency_ms=obj.get("time"),
        decision=None if accepted is None else "accepted" if accepted else "rejected",
        accepted_text=obj["completion"] if accepted else None,
    )


def _utc(text: str) -> datetime | None:
    """The timestamp in UTC, or None where it is not ISO 8601 or lies outside [EARLIEST, LATEST).
    `0001-01-01T00:00:00+14:00` is valid ISO 8601 but before year 1 in UTC: converting it raises
    OverflowError, and so would the millisecond the sessions' closes add to `9999-12-31T23:59:59.999`."""
    try:
        ts = datetime.fromisoformat(text)
        ts = ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None
    return ts if EARLIEST <= ts < LATEST else None


# A value in a message: short, and safe on whatever a post holds (a plain repr of a list nested a
# thousand deep raises RecursionError, and of a 4 MiB string costs 4 MiB).
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlevel = 3


def _show(value: object) -> str:
    return _repr.repr(value)


def _name(kind) -> str:
    return " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
