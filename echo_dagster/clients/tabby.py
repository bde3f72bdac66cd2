"""Tabby's event log: `~/.tabby/events/YYYY-MM-DD.json`, one `{"ts": <ms since epoch>, "event":
{<type>: {...}}}` a line.

`completion` carries `completion_id`, `language`, `segments.prefix`/`suffix` (the client's window
around the cursor; newer servers add `filepath` and `git_url`), `choices` (`index`, `text`) and
`user`; then `view`, `select` (with `kind: "line"` when one line of it was taken) and `dismiss`
name the completion and the choice. A completion is shown once it was viewed; its proposal is the
viewed choice. Tabby does not log that a proposal was typed over: one viewed and neither selected
nor dismissed counts as rejected, with a null reason (and is counted as inferred).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timezone

from echo_dagster.clients.records import ClientCompletion, ReadResult, language_of, pseudonym

CLIENT = "tabby"
_ACTIONS = ("view", "select", "dismiss")


def read_tabby(lines: Iterable[tuple[str, str | bytes]]) -> ReadResult:
    result = ReadResult()
    requests: dict[str, tuple[datetime, dict, str]] = {}
    actions: dict[str, list[tuple[datetime, str, dict]]] = defaultdict(list)
    for where, line in lines:
        result.lines += 1
        parsed = _parse(line, result, where)
        if parsed is None:
            continue
        ts, kind, body = parsed
        if kind == "completion":
            if body["completion_id"] in requests:
                result.skip("duplicate_completion", where, f"completion_id {body['completion_id']!r} logged before")
            else:
                requests[body["completion_id"]] = (ts, body, where)
        else:
            actions[body["completion_id"]].append((ts, kind, body))
    for cid in actions.keys() - requests.keys():
        result.skip("action_without_completion", f"completion {cid}",
                    f"{len(actions[cid])} view/select/dismiss events name a completion the log lacks")
    for cid, (ts, body, where) in requests.items():
        completion = _completion(ts, body, sorted(actions.get(cid, []), key=lambda a: a[0]), result, where)
        if completion is not None:
            result.completions.append(completion)
    result.completions.sort(key=lambda c: (c.shown_ts, c.completion_id))
    return result


def _parse(line: str | bytes, result: ReadResult, where: str) -> tuple[datetime, str, dict] | None:
    if not line.strip():
        result.skip("blank_line", where, "empty line")
        return None
    try:
        obj = json.loads(line)
    except ValueError as exc:
        result.skip("bad_json", where, f"not valid JSON: {exc}")
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), dict) or len(obj["event"]) != 1:
        result.skip("not_an_event", where, 'expected {"ts": <ms>, "event": {<type>: {...}}}')
        return None
    if not isinstance(obj.get("ts"), int) or isinstance(obj["ts"], bool) or obj["ts"] < 0:
        result.skip("bad_field_type", where, f"field 'ts': expected milliseconds since the epoch, got {obj.get('ts')!r:.60}")
        return None
    (kind, body), = obj["event"].items()
    if kind not in ("completion", *_ACTIONS):
        result.skip("other_event", where, f"event type {kind!r} is not a completion, view, select or dismiss")
        return None
    problem = _check(kind, body)
    if problem:
        result.skip(problem[0], where, problem[1])
        return None
    return datetime.fromtimestamp(obj["ts"] / 1000, timezone.utc), kind, body


def _check(kind: str, body: object) -> tuple[str, str] | None:
    if not isinstance(body, dict):
        return "not_an_event", f"{kind}: expected an object"
    fields = {"completion_id": str}
    if kind == "completion":
        fields |= {"language": str, "segments": dict, "choices": list}
    else:
        fields |= {"choice_index": int}
    for name, expected in fields.items():
        if name not in body:
            return "missing_field", f"{kind}.{name}: required, missing"
        if not isinstance(body[name], expected):
            return "bad_field_type", f"{kind}.{name}: expected {expected.__name__}, got {body[name]!r:.60}"
    if kind == "completion":
        segments = body["segments"]
        for name in ("prefix", "suffix"):
            if name == "prefix" and name not in segments:
                return "missing_field", "completion.segments.prefix: required, missing"
            if segments.get(name) is not None and not isinstance(segments[name], str):
                return "bad_field_type", f"completion.segments.{name}: expected str, got {segments[name]!r:.60}"
        if not all(isinstance(c, dict) and isinstance(c.get("index"), int) and isinstance(c.get("text"), str)
                   for c in body["choices"]):
            return "bad_field_type", "completion.choices: expected [{index: int, text: str}, ...]"
    return None


def _completion(ts: datetime, body: dict, actions: list, result: ReadResult, where: str) -> ClientCompletion | None:
    views = [a for a in actions if a[1] == "view"]
    if not views:
        result.skip("not_viewed", where, f"completion {body['completion_id']!r} was never viewed")
        return None
    choice_index = views[0][2]["choice_index"]
    choice = next((c["text"] for c in body["choices"] if c["index"] == choice_index), None)
    if choice is None:
        result.skip("bad_field_value", where, f"viewed choice {choice_index} is not among the completion's choices")
        return None
    shown = views[0][0]
    selects = [a for a in actions if a[1] == "select"]
    dismiss = next((a for a in actions if a[1] == "dismiss"), None)
    if selects:
        line_selects = [a for a in selects if a[2].get("kind") == "line"]
        if len(line_selects) == len(selects):  # one line taken per select
            accepted = "".join(choice.splitlines(keepends=True)[: len(line_selects)])
        else:
            accepted = choice
        decision, decided, reason = "accepted", selects[-1][0], None
    elif dismiss:
        accepted, decision, decided, reason = None, "rejected", dismiss[0], "dismissed"
    else:
        accepted, decision, decided, reason = None, "rejected", shown, None
        result.inferred["rejected_without_dismiss"] += 1
    segments = body["segments"]
    path = segments.get("filepath") if isinstance(segments.get("filepath"), str) else None
    return ClientCompletion(
        client=CLIENT, completion_id=body["completion_id"], shown_ts=shown, decided_ts=decided,
        user_id=pseudonym(CLIENT, body.get("user") if isinstance(body.get("user"), str) else None), path=path,
        repo=segments.get("git_url") if isinstance(segments.get("git_url"), str) else None,
        language=body["language"] or language_of(path), client_version=None, model=None,
        prefix=segments["prefix"], suffix=segments.get("suffix") or "", proposal=choice, latency_ms=None,
        decision=decision, accepted_text=accepted, reject_reason=reason,
    )
