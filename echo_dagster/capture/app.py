"""The capture endpoint: IDE plugins post schema-v1 events, Continue posts its dev data.

* `POST /v1/events` — one event (a JSON object) or a batch (JSON lines). All or nothing: one
  invalid line and the answer is 400 naming each bad line, its field and what was wrong.
* `POST /v1/continue` — the body Continue sends to an HTTP destination (`data:` in its
  config.yaml, schema 0.2.0, `apiKey` = the token); `autocomplete` events are mapped to schema v1
  with implicit snapshots (`clients.implicit.LiveStreams`), other events are acknowledged and ignored.
* `GET /healthz`.

Every post needs `Authorization: Bearer <token>`; the tenant is the token's, whatever the payload
says. An answer of 200 means the events are durably written (`sink`); events of opted-out users or
tenants are dropped at the door (and counted in the answer). Limits: body size (413), events per
request (413), events per second per tenant (429 with Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from echo_dagster.capture.tokens import TokenStore
from echo_dagster.clients.continue_dev import continue_completion
from echo_dagster.clients.implicit import LiveStreams
from echo_dagster.clients.records import ReadResult
from echo_dagster.events import EventError, parse_event

log = logging.getLogger("echo_dagster.capture")
ERRORS_SHOWN = 20


@dataclass(frozen=True)
class CaptureSettings:
    max_body_bytes: int = 4 << 20
    max_events: int = 1000  # per request
    rate_per_s: float = 2000.0  # events per second per tenant, sustained
    burst: int = 5000  # events a tenant may send at once
    sweep_s: float = 60.0  # how often idle Continue files are closed


class _TooLarge(Exception):
    pass


class RateLimiter:
    """A token bucket per tenant."""

    def __init__(self, rate_per_s: float, burst: int):
        self.rate, self.burst = rate_per_s, burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, tenant: str, n: int) -> float:
        """0 when `n` events may pass now, else the seconds to wait."""
        now = time.monotonic()
        level, then = self._buckets.get(tenant, (float(self.burst), now))
        level = min(float(self.burst), level + (now - then) * self.rate)
        if n > level:
            self._buckets[tenant] = (level, now)
            return (n - level) / self.rate
        self._buckets[tenant] = (level - n, now)
        return 0.0


def create_app(tokens: TokenStore, sink, opt_out, settings: CaptureSettings = CaptureSettings()) -> Starlette:
    """`sink`: a `capture.sink` writer; `opt_out`: a callable returning the current `optout.OptOut`."""
    limiter = RateLimiter(settings.rate_per_s, settings.burst)
    live = LiveStreams()

    async def commit(lines: list[bytes]) -> None:
        await asyncio.wrap_future(sink.submit(lines))

    async def events(request: Request) -> JSONResponse:
        return await _handle(request, "events", _schema_v1_lines)

    async def from_continue(request: Request) -> JSONResponse:
        return await _handle(request, "continue", _continue_lines)

    def _schema_v1_lines(body: bytes, tenant: str) -> tuple[list[tuple[int, dict]], list[dict], int]:
        try:
            whole = json.loads(body)
        except ValueError:
            whole = None
        if isinstance(whole, dict):  # one event, however it is laid out
            return [(1, {**whole, "tenant_id": tenant})], [], 0
        objects, errors = [], []
        for n, line in enumerate(body.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                errors.append({"line": n, "reason": "bad_json", "field": None, "message": f"not valid JSON: {exc}"})
                continue
            if not isinstance(obj, dict):
                errors.append({"line": n, "reason": "not_an_object", "field": None,
                               "message": f"expected a JSON object, got {type(obj).__name__}"})
                continue
            objects.append((n, {**obj, "tenant_id": tenant}))
        return objects, errors, 0

    def _continue_lines(body: bytes, tenant: str) -> tuple[list[tuple[int, dict]], list[dict], int]:
        try:
            payload = json.loads(body)
        except ValueError as exc:
            return [], [{"line": 1, "reason": "bad_json", "field": None, "message": f"not valid JSON: {exc}"}], 0
        if isinstance(payload, dict) and payload.get("name") not in (None, "autocomplete"):
            return [], [], 1
        read = ReadResult()
        completion = continue_completion(payload, read, "body")
        if completion is None:
            if read.skipped.get("no_code"):
                return [], [], 1
            (problem,) = read.problems
            return [], [{"line": 1, "reason": problem["reason"], "field": None, "message": problem["message"]}], 0
        return [(1, e) for e in live.add(completion, tenant)], [], 0

    async def _handle(request: Request, route: str, to_events) -> JSONResponse:
        started = time.perf_counter()
        tenant = _tenant(request, tokens)
        if tenant is None:
            return _answer(route, started, None, 401, {"error": "missing or unknown bearer token"},
                           {"WWW-Authenticate": "Bearer"})
        try:
            body = await _read_body(request, settings.max_body_bytes)
        except _TooLarge:
            return _answer(route, started, tenant, 413, {"error": f"body over {settings.max_body_bytes} bytes"})
        objects, errors, ignored = to_events(body, tenant)
        valid = []  # (the line to write, the event it is)
        for n, obj in objects:
            line = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
            try:
                valid.append((line + b"\n", parse_event(line)))
            except EventError as err:
                errors.append({"line": n, "reason": err.reason, "field": err.field, "message": err.message})
        if errors:
            errors.sort(key=lambda e: e["line"])
            return _answer(route, started, tenant, 400, {"error": f"{len(errors)} invalid event(s); none written",
                                                         "errors": errors[:ERRORS_SHOWN]})
        if len(valid) > settings.max_events:
            return _answer(route, started, tenant, 413, {"error": f"{len(valid)} events: at most "
                                                                  f"{settings.max_events} a request"})
        wait = limiter.take(tenant, len(valid))
        if wait:
            return _answer(route, started, tenant, 429, {"error": "rate limit: retry later"},
                           {"Retry-After": str(max(1, round(wait)))})
        listed = opt_out()
        kept = [line for line, event in valid if not listed.covers(event.user_id, event.tenant_id)]
        if kept:
            try:
                await commit(kept)
            except Exception as exc:
                log.exception("commit failed")
                return _answer(route, started, tenant, 503, {"error": f"not written: {exc}"})
        return _answer(route, started, tenant, 200, {"accepted": len(kept), "opted_out": len(valid) - len(kept),
                                                     "ignored": ignored})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "node": getattr(sink, "node", None),
                             "recovered_segments": getattr(sink, "recovered", 0)})

    async def sweep_forever() -> None:
        while True:
            await asyncio.sleep(settings.sweep_s)
            closed = live.sweep(datetime.now(timezone.utc))
            if closed:
                await commit([json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in closed])

    @contextlib.asynccontextmanager
    async def lifespan(app):
        sweeper = asyncio.create_task(sweep_forever())
        log.info(json.dumps({"msg": "started", "node": getattr(sink, "node", None),
                             "recovered_segments": getattr(sink, "recovered", 0)}))
        try:
            yield
        finally:
            sweeper.cancel()
            await asyncio.to_thread(sink.close)
            log.info(json.dumps({"msg": "stopped"}))

    return Starlette(routes=[Route("/v1/events", events, methods=["POST"]),
                             Route("/v1/continue", from_continue, methods=["POST"]),
                             Route("/healthz", health, methods=["GET"])], lifespan=lifespan)


def _tenant(request: Request, tokens: TokenStore) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return tokens.tenant_for(token.strip()) if scheme.lower() == "bearer" and token.strip() else None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(route: str, started: float, tenant: str | None, status: int, body: dict,
            headers: dict | None = None) -> JSONResponse:
    log.info(json.dumps({"msg": "request", "route": route, "tenant": tenant, "status": status,
                         "accepted": body.get("accepted"), "ms": round((time.perf_counter() - started) * 1000, 2),
                         "error": body.get("error")}))
    return JSONResponse(body, status_code=status, headers=headers)
