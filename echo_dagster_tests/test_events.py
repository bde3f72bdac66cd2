import json

import pytest

from echo_dagster.events import (
    CompletionAccepted,
    CompletionRejected,
    CompletionShown,
    DocumentClosed,
    DocumentSnapshot,
    EventError,
    parse_event,
)

COMMON = {
    "schema_version": 1, "event_id": "e1", "ts": "2026-11-20T10:00:00.125Z", "session_id": "s1", "user_id": "u1",
    "tenant_id": "t1", "repo": "r", "path": "a.py", "language": "python", "client": "vscode/1.2",
}
VALID = {
    CompletionShown: {"event": "completion_shown", "completion_id": "c1", "model": "m", "cursor": 10,
                      "prefix": "def f(", "suffix": "", "proposal": "x):", "latency_ms": 120.5},
    CompletionAccepted: {"event": "completion_accepted", "completion_id": "c1", "accepted_text": "x):"},
    CompletionRejected: {"event": "completion_rejected", "completion_id": "c1", "reason": "typed_over"},
    DocumentSnapshot: {"event": "document_snapshot", "document": "def f(x):\n", "trigger": "save", "seq": 3},
    DocumentClosed: {"event": "document_closed"},
}


def line(**fields) -> bytes:
    return json.dumps({**COMMON, **fields}).encode()


@pytest.mark.parametrize("cls", VALID)
def test_every_event_type_parses_into_its_typed_struct(cls):
    event = parse_event(line(**VALID[cls]))
    assert type(event) is cls
    assert event.event == VALID[cls]["event"]
    assert event.ts.isoformat() == "2026-11-20T10:00:00.125000+00:00"


def test_importers_may_leave_location_and_optional_fields_null():
    event = parse_event(line(**{**VALID[CompletionShown], "repo": None, "client": None, "model": None,
                                "cursor": None, "latency_ms": None}))
    assert (event.repo, event.client, event.model, event.cursor) == (None, None, None, None)


def test_unknown_extra_fields_are_ignored():
    assert parse_event(line(**VALID[DocumentClosed], future_field=1)).event_id == "e1"


def error(raw: bytes) -> EventError:
    with pytest.raises(EventError) as info:
        parse_event(raw)
    return info.value


@pytest.mark.parametrize(
    "raw, reason, field, words",
    [
        (b'{"event": "completion_shown",', "bad_json", None, ["not valid JSON"]),
        (b"[1, 2]", "not_an_object", None, ["expected a JSON object", "got list"]),
        (b"   ", "blank_line", None, ["empty"]),
        (b'{"a": "\xff"}', "invalid_utf8", None, ["not UTF-8", "byte 7"]),
        (b'{"a":\x00 1}', "nul_byte", None, ["NUL byte at offset 5"]),
        (line(**{**VALID[DocumentClosed], "schema_version": 2}), "unsupported_schema_version", "schema_version",
         ["expected 1, got 2"]),
        (line(event=["completion_shown"]), "bad_field_type", "event", ["expected str", "['completion_shown']"]),
        (line(event="completion_teleported"), "unknown_event", "event", ["completion_teleported", "completion_shown"]),
        (line(event="completion_accepted", completion_id="c1"), "missing_field", "accepted_text",
         ["'accepted_text'", "required on completion_accepted"]),
        (line(**{**VALID[CompletionShown], "cursor": "12"}), "bad_field_type", "cursor",
         ["'cursor'", "expected int | null", "got str '12'"]),
        (line(**{**VALID[CompletionShown], "cursor": -1}), "bad_field_value", "cursor", ["'cursor'", ">= 0", "-1"]),
        (line(**{**VALID[CompletionRejected], "reason": "bored"}), "bad_field_value", "reason", ["'reason'", "'bored'"]),
        (line(**{**VALID[DocumentSnapshot], "trigger": "idle"}), "bad_field_value", "trigger", ["'trigger'"]),
        (line(**{**VALID[DocumentClosed], "event_id": ""}), "bad_field_value", "event_id", ["length >= 1"]),
        (line(**{**VALID[DocumentClosed], "ts": "2026-11-20 10:00"}), "bad_field_value", "ts", ["RFC3339"]),
        (line(**{**VALID[DocumentClosed], "ts": "2026-11-20T10:00:00+02:00"}), "bad_field_value", "ts",
         ["in UTC", "+02:00"]),
        (line(**{**VALID[DocumentClosed], "ts": "2026-11-20T10:00:00"}), "bad_field_value", "ts", ["in UTC"]),
        (json.dumps({k: v for k, v in COMMON.items() if k != "user_id"} | VALID[DocumentClosed]).encode(),
         "missing_field", "user_id", ["'user_id'"]),
    ],
)
def test_errors_name_the_field_what_was_expected_and_what_came(raw, reason, field, words):
    err = error(raw)
    assert (err.reason, err.field) == (reason, field)
    for word in words:
        assert word in err.message, err.message


@pytest.mark.parametrize("raw", [
    b"[" * 994 + b"]" * 994,  # 2 KB that made the decoder raise RecursionError
    b'{"a":' + b"[" * 3000 + b"]" * 3000 + b"}",
    line(**VALID[DocumentClosed])[:-1] + b',"deep":' + b"[" * 2000 + b"]" * 2000 + b"}",  # a valid event around it
])
def test_deeply_nested_json_is_a_reason_not_a_crash(raw):
    with pytest.raises(EventError) as err:
        parse_event(raw)
    assert err.value.reason == "nested_too_deep"
