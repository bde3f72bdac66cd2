"""The completion APIs IDE clients speak, read into one `Asked` and answered in each one's shape.

* Tabby's server API, as its IDE extensions (`tabby-agent`) call it: `POST /v1/completions` with
  `language` and `segments` (`prefix`, `suffix`, `filepath`, `git_url`, ...), answered
  `{"id": "cmpl-…", "choices": [{"index": 0, "text": …}]}`; `POST /v1/events` with `type` view,
  select (`select_kind=line` in the query: one line of it taken) or dismiss, naming `completion_id`.
* OpenAI's completions API, as Continue's `openai` provider and Tabby's `openai/completion` backend
  call it: `prompt`, `suffix`, `max_tokens`, `stop`, `temperature`, `seed`, `user`, `stream`.

Where a client asks nothing of the sampling, decoding is greedy: the same request gets the same
proposal (OpenAI's own default temperature is 1).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass

from echo_dagster.clients.records import language_of, local_path
from echo_dagster.completion import CompletionRequest
from echo_dagster.events import EventError, decode_json

MAX_PROMPT_CHARS = 1 << 20  # a window this large is a mistake: the prompt keeps ~200 tokens of it
MAX_NAME_CHARS = 4096  # a path, a repository URL, a language, a user
MAX_SEED = 2**63 - 1
MAX_STOP_CHARS = 64  # each stop string (what may stream is checked against each at every token)


class ProtocolError(ValueError):
    """A request the API cannot take: answered 400 with this message."""


@dataclass(frozen=True)
class Asked:
    api: str  # "tabby" or "openai"
    request: CompletionRequest
    path: str | None
    repo: str | None
    user: str | None
    max_tokens: int | None  # None: the server's limit
    stop: tuple[str, ...]
    temperature: float
    seed: int | None
    stream: bool


def completion_id() -> str:
    return "cmpl-" + secrets.token_hex(12)


def _object(body: bytes) -> dict:
    try:
        payload = decode_json(body)  # strictly, as the capture routes decode: no text the landing zone cannot hold
    except EventError as err:
        raise ProtocolError(f"the body is not JSON: {err.message}") from None
    if not isinstance(payload, dict):
        raise ProtocolError("the body must be a JSON object")
    return payload


def _text(payload: dict, key: str, where: str, *, required: bool = False, limit: int = MAX_NAME_CHARS,
          value=None) -> str | None:
    value = payload.get(key) if value is None else value
    if value is None:
        if required:
            raise ProtocolError(f"field {where}{key!r} is required (a string)")
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"field {where}{key!r}: expected a string, got {type(value).__name__}")
    if len(value) > limit:
        raise ProtocolError(f"field {where}{key!r}: {len(value)} characters, at most {limit}")
    return value


def _number(payload: dict, key: str, kind: type, low: float, high: float) -> float | int | None:
    value = payload.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (kind is int and isinstance(value, float) and not value.is_integer()):
        raise ProtocolError(f"field {key!r}: expected {'an integer' if kind is int else 'a number'}, got {value!r:.40}")
    # Compared before any conversion: an integer of 400 digits is a Python int, and float() of it overflows.
    if not low <= value <= high:
        raise ProtocolError(f"field {key!r}: {_shown(value)} is outside [{low}, {high}]")
    return kind(value)


def _shown(value: float | int) -> str:
    text = str(value) if isinstance(value, float) or abs(value) < 10**30 else f"an integer of {len(str(abs(value)))} digits"
    return text


def completion_request(body: bytes) -> Asked:
    """A body of `POST /v1/completions`: Tabby's (it has `segments`) or OpenAI's."""
    payload = _object(body)
    return tabby_request(payload) if "segments" in payload else openai_request(payload)


def tabby_request(payload: dict) -> Asked:
    segments = payload.get("segments")
    if not isinstance(segments, dict):
        raise ProtocolError("field 'segments' is required: an object with 'prefix' (and 'suffix', 'filepath')")
    prefix = _text(segments, "prefix", "segments.", required=True, limit=MAX_PROMPT_CHARS)
    suffix = _text(segments, "suffix", "segments.", limit=MAX_PROMPT_CHARS) or ""
    path = local_path(_text(segments, "filepath", "segments."))
    language = _text(payload, "language", "") or language_of(path) or "unknown"
    return Asked("tabby", CompletionRequest(prefix, suffix, language), path, _text(segments, "git_url", "segments."),
                 _text(payload, "user", ""), None, (), _number(payload, "temperature", float, 0, 2) or 0.0,
                 _number(payload, "seed", int, 0, MAX_SEED), False)


def openai_request(payload: dict) -> Asked:
    prompt = payload.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]  # one prompt, as a list
    if not isinstance(prompt, str):
        raise ProtocolError("field 'prompt' is required: one string (a batch of prompts is not served)")
    _text(payload, "prompt", "", limit=MAX_PROMPT_CHARS, value=prompt)
    stop = payload.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (list, tuple)) or len(stop) > 4 or \
            not all(isinstance(s, str) and len(s) <= MAX_STOP_CHARS for s in stop):
        raise ProtocolError(f"field 'stop': expected a string or a list of at most 4 strings, each at most "
                            f"{MAX_STOP_CHARS} characters")
    if (payload.get("n") or 1) != 1 or (payload.get("best_of") or 1) != 1:
        raise ProtocolError("fields 'n' and 'best_of': only 1 is served")
    if payload.get("echo"):
        raise ProtocolError("field 'echo': not served")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise ProtocolError("field 'stream': expected true or false")
    language = _text(payload, "language", "")  # not OpenAI's; sent by clients that know it
    suffix = _text(payload, "suffix", "", limit=MAX_PROMPT_CHARS) or ""
    return Asked("openai", CompletionRequest(prompt, suffix, language or "unknown"), None, None,
                 _text(payload, "user", ""), _number(payload, "max_tokens", int, 1, 1 << 20),
                 tuple(s for s in stop if s), _number(payload, "temperature", float, 0, 2) or 0.0,
                 _number(payload, "seed", int, 0, MAX_SEED), stream)


@dataclass(frozen=True)
class TabbyEvent:
    kind: str  # "view", "select" or "dismiss"
    completion_id: str
    line_only: bool  # select_kind=line: the first line of the choice was taken


def is_tabby_event(payload: object) -> bool:
    """Tabby's event bodies share `POST /v1/events` with schema-v1 events, told apart by shape: a
    schema-v1 event names its `event` and `schema_version`, Tabby's its `type` and `completion_id`."""
    return (isinstance(payload, dict) and "schema_version" not in payload and "event" not in payload
            and isinstance(payload.get("type"), str) and "completion_id" in payload)


def tabby_event(payload: dict, select_kind: str | None) -> TabbyEvent:
    kind = payload["type"]
    cid = payload.get("completion_id")
    if not isinstance(cid, str) or not cid:
        raise ProtocolError("field 'completion_id': expected the id of a served completion")
    if payload.get("choice_index", 0) != 0:  # one choice is served
        raise ProtocolError("field 'choice_index': only choice 0 is served")
    return TabbyEvent(kind, cid, select_kind == "line")


def tabby_response(cid: str, text: str) -> dict:
    return {"id": cid, "choices": [{"index": 0, "text": text}]}


def openai_response(cid: str, model: str, text: str, finish_reason: str, prompt_tokens: int,
                    completion_tokens: int) -> dict:
    return {"id": cid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def openai_chunk(cid: str, model: str, text: str, finish_reason: str | None) -> bytes:
    chunk = {"id": cid, "object": "text_completion", "created": int(time.time()), "model": model,
             "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


STREAM_END = b"data: [DONE]\n\n"
