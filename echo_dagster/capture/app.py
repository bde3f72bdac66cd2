"""The capture endpoint: IDE plugins post schema-v1 events, Continue posts its dev data.

* `POST /v1/events` — one event (a JSON object) or a batch (JSON lines). All or nothing: one
  invalid line and the answer is 400 naming each bad line, its field and what was wrong.
* `POST /v1/continue` — the body Continue sends to an HTTP destination (`data:` in its
  config.yaml, schema 0.2.0, `apiKey` = the token); `autocomplete` events are mapped to schema v1
  with implicit snapshots (`clients.implicit.LiveStreams`), other events are acknowledged and ignored.
* with a model to serve (`completions`): Tabby's server API and OpenAI's completions API, every
  proposal captured where it is served (`completion_routes`); Tabby's view/select/dismiss events
  share `POST /v1/events`, told apart from schema-v1 events by their shape.
* `GET /healthz` — 200 `{"status": "ok"}`, or 503 `{"status": "refusing"}` while the server cannot
  accept posts (its token file or opt-out list unreadable, its writer dead); with a token, also the
  problems and the figures of the token's own tenant (no other tenant, no server path).

A post goes through these steps in order; each refusal is answered at once, with a reason, and
logged (one JSON line a request, whatever its outcome):

1. the bearer token (401); the token file and the opt-out list readable (503 naming the file and
   line: the server must not take data it cannot attribute, or check against the list);
2. the body: at most `max_body_bytes` (413), and room for it among the bodies held at once by all
   requests (503 with Retry-After);
3. for `/v1/events`, at most `max_events` lines, counted before anything is parsed (413), then
   the tenant's rate (429 with Retry-After);
4. decoding, mapping and validation (`bodies`), in worker threads: a heavy body never holds the
   event loop that every other request waits on (400 naming each bad line);
5. opt-out (dropped, counted in the answer), then the durable write (`sink`): 200 means written
   and synced.

Connections themselves — their number, and how long a request may take to arrive — are bounded
below the application, in `guard`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from echo_dagster.capture import bodies
from echo_dagster.capture.completion_routes import ServedCompletions
from echo_dagster.capture.tokens import TokenFileError, TokenStore
from echo_dagster.clients.implicit import LiveStreams
from echo_dagster.events import EventError, decode_json
from echo_dagster.optout import OptOut, OptOutError
from echo_dagster.serving import protocols

log = logging.getLogger("echo_dagster.capture")
ERRORS_SHOWN = 20
OPENAI_ROUTES = ("completions", "models")


@dataclass(frozen=True)
class CaptureSettings:
    # What one request may hold, and each tenant send.
    max_body_bytes: int = 4 << 20
    max_events: int = 1000  # lines a request, counted before parsing
    rate_per_s: float = 2000.0  # events per second per tenant, sustained
    burst: int = 5000  # events a tenant may send at once
    # Connections (`guard`).
    max_connections: int = 1000  # kept below the file-descriptor limit by `server.serve`
    read_timeout_s: float = 30.0  # for a whole request to arrive, from its first byte
    keep_alive_s: float = 5.0  # idle between requests
    max_header_bytes: int = 64 << 10
    # Memory and CPU.
    max_buffered_bytes: int = 256 << 20  # request bodies held at once, all requests together
    workers: int = 4  # threads that decode and validate
    # Continue's open completions (`LiveStreams`).
    live_tenant_bytes: int = 16 << 20
    live_total_bytes: int = 128 << 20
    live_window_chars: int = 64 << 10
    idle_close_s: float = 1800.0  # a file without requests for this long closes its completions
    sweep_s: float = 60.0  # how often idle files are looked for


class _Refusal(Exception):
    """An answer other than 200, decided part way."""

    def __init__(self, status: int, error: str, headers: dict | None = None, detail: str | None = None, **extra):
        super().__init__(error)
        self.status, self.body, self.headers, self.detail = status, {"error": error, **extra}, headers, detail


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


class BodyBudget:
    """Bytes of request bodies held at once, all requests together: without a bound, a few hundred
    concurrent 4 MiB posts hold gigabytes while they wait for a worker. Used on the event loop only."""

    def __init__(self, limit: int):
        self.limit, self.held = limit, 0

    @contextlib.asynccontextmanager
    async def read(self, request: Request, max_bytes: int):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise _Refusal(413, f"body of {declared} bytes: at most {max_bytes}")
        mine, chunks = 0, []
        try:
            async for chunk in request.stream():
                if mine + len(chunk) > max_bytes:
                    raise _Refusal(413, f"body over {max_bytes} bytes")
                if self.held + len(chunk) > self.limit:
                    raise _Refusal(503, f"the server holds {self.limit} bytes of bodies already: retry in a second",
                                   {"Retry-After": "1"})
                self.held += len(chunk)
                mine += len(chunk)
                chunks.append(chunk)
            body = b"".join(chunks)
            chunks.clear()
            yield body
        finally:
            self.held -= mine


def create_app(tokens: TokenStore, sink, opt_out, settings: CaptureSettings = CaptureSettings(),
               connection_stats=None, completions=None, tenant_policy=None) -> Starlette:
    """`sink`: a `capture.sink` writer; `opt_out`: a callable returning the current `optout.OptOut`
    or raising `OptOutError`; `connection_stats`: the `guard.ConnectionStats` to show in /healthz;
    `completions`: a `serving.service.Completions` to serve proposals with, `tenant_policy` a
    callable returning the current `tenancy.TenantPolicy`."""
    limiter = RateLimiter(settings.rate_per_s, settings.burst)
    live = LiveStreams(timedelta(seconds=settings.idle_close_s), tenant_bytes=settings.live_tenant_bytes,
                       total_bytes=settings.live_total_bytes, max_window_chars=settings.live_window_chars)
    budget = BodyBudget(settings.max_buffered_bytes)
    pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="capture-work")

    async def off_loop(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def commit(lines: list[bytes]) -> None:
        await asyncio.wrap_future(sink.submit(lines))

    async def handle(request: Request, route: str, process) -> JSONResponse:
        started = time.perf_counter()
        tenant = None
        try:
            try:
                tenant = _tenant(request, tokens)
            except TokenFileError as err:  # the file's path and content go to the log, not to anyone who asks
                raise _Refusal(503, "the server cannot check tokens: its token file is unreadable (see its log "
                                    "and /healthz); retry later", {"Retry-After": "30"}, detail=str(err)) from None
            if tenant is None:
                raise _Refusal(401, "missing or unknown bearer token", {"WWW-Authenticate": "Bearer"})
            try:
                listed = opt_out()
            except OptOutError as err:  # named by the file's name: its path is for the operator's log
                raise _Refusal(503, f"the opt-out list cannot be read, so nothing is accepted until it is fixed: "
                                    f"{err.public()}", {"Retry-After": "30"}, detail=str(err)) from None
            async with budget.read(request, settings.max_body_bytes) as body:
                status, answer = await process(body, tenant, listed)
            if isinstance(answer, Response):  # a stream: logged as it starts
                _answer(route, started, tenant, status, {})
                return answer
            return _answer(route, started, tenant, status, answer)
        except _Refusal as refusal:
            return _answer(route, started, tenant, refusal.status, refusal.body, refusal.headers, refusal.detail)
        except ClientDisconnect:
            # Nobody to answer: the client went away, or `guard` closed a request that was too slow.
            return _answer(route, started, tenant, 499, {"error": "the connection closed before the body arrived"})
        except Exception:
            log.exception("request failed")
            return _answer(route, started, tenant, 500, {"error": "internal error (logged on the server)"})

    def rate(tenant: str, n: int) -> None:
        wait = limiter.take(tenant, n)
        if wait:
            raise _Refusal(429, "rate limit: retry later", {"Retry-After": str(max(1, round(wait)))})

    def invalid(errors: list[dict]) -> None:
        if errors:
            errors.sort(key=lambda e: e["line"])
            raise _Refusal(400, f"{len(errors)} invalid event(s); none written", errors=errors[:ERRORS_SHOWN])

    async def write(listed: OptOut, own: list, closed: list) -> tuple[int, dict]:
        """`own`: this request's (line, event) pairs; `closed`: closes of open completions it
        pushed out of memory, written with it but not counted as its."""
        kept = [line for line, event in own if not listed.covers(event.user_id, event.tenant_id)]
        lines = kept + [line for line, event in closed if not listed.covers(event.user_id, event.tenant_id)]
        if lines:
            try:
                await commit(lines)
            except Exception as exc:
                log.exception("commit failed")  # the cause (a path, a bucket) is the operator's
                raise _Refusal(503, f"not written ({type(exc).__name__}): retry", {"Retry-After": "1"}) from None
        return 200, {"accepted": len(kept), "opted_out": len(own) - len(kept), "ignored": 0}

    def made_here(events: list[dict]) -> list[tuple]:
        lines, problems = bodies.made_here(events)
        for problem in problems:  # a bug here, not the client's: its record is quarantined, the rest written
            log.error(json.dumps({"msg": "an event made by the server is not valid: written for quarantine",
                                  **problem}))
        return lines

    async def write_events(events: list[dict], listed: OptOut) -> int:
        _, answer = await write(listed, made_here(events), [])
        return answer["accepted"]

    async def write_completion(completion, tenant: str, listed: OptOut) -> list:
        """Its events, the snapshots it gives earlier completions of its file, the closes it causes:
        written; the events of this request, returned. Not written: the completion is forgotten."""
        own, closed = await off_loop(add_live, completion, tenant)
        try:
            # What a completion writes (its snapshots of the file's earlier completions too) is
            # charged to its tenant as posted events are: no tenant fills the landing zone for all.
            rate(tenant, len(own))
            await write(listed, own, closed)
        except BaseException:
            await off_loop(live.discard, completion, tenant)
            if closed:  # others' completions it pushed out: their closes are theirs, not this request's to lose
                with contextlib.suppress(Exception):
                    await write(listed, [], closed)
            raise
        return [event for _, event in own]

    served = None
    if completions is not None:
        served = ServedCompletions(completions, tenant_policy, handle, write_events, write_completion, _Refusal)

    async def schema_v1(request: Request, body: bytes, tenant: str, listed: OptOut) -> tuple[int, dict]:
        if served is not None and body[:1] == b"{" and b'"completion_id"' in body and b'"schema_version"' not in body:
            try:
                payload = await off_loop(decode_json, body)  # one JSON object: maybe a Tabby event
            except EventError:
                payload = None  # the schema-v1 path says what is wrong with it
            if protocols.is_tabby_event(payload):
                rate(tenant, 1)  # one event, at the tenant's rate, as schema-v1 events are
                return await served.tabby_event(request, payload, tenant, listed)
        lines = bodies.line_count(body)
        if lines > settings.max_events:
            raise _Refusal(413, f"{lines} lines: at most {settings.max_events} events a request, one a line "
                                f"(blank lines count); split the batch")
        rate(tenant, lines)
        checked = await off_loop(bodies.schema_v1, body, tenant)
        invalid(checked.errors)
        return await write(listed, checked.valid, [])

    def add_live(completion, tenant: str) -> tuple[list, list]:
        own, closed = live.add(completion, tenant)
        return made_here(own), made_here(closed)

    async def from_continue(body: bytes, tenant: str, listed: OptOut) -> tuple[int, dict]:
        post = await off_loop(bodies.continue_post, body, tenant)
        invalid(post.errors)
        if post.ignored:
            return 200, {"accepted": 0, "opted_out": 0, "ignored": 1}
        if listed.covers(post.completion.user_id, tenant):  # not kept, in memory either
            return 200, {"accepted": 0, "opted_out": len(post.own.valid), "ignored": 0}
        rate(tenant, len(post.own.valid))
        own, closed = await off_loop(add_live, post.completion, tenant)
        return await write(listed, own, closed)

    async def events_route(request: Request) -> JSONResponse:
        return await handle(request, "events", lambda body, tenant, listed: schema_v1(request, body, tenant, listed))

    async def continue_route(request: Request) -> JSONResponse:
        return await handle(request, "continue", from_continue)

    async def health(request: Request) -> JSONResponse:
        """Up or refusing, to anyone; the details to a token's holder, about its own tenant only and
        naming no server path (those are in the log)."""
        problems = []
        if problem := tokens.problem():
            problems.append(f"token file: {problem.public()}")
        try:
            opt_out()
        except OptOutError as err:
            problems.append(f"opt-out list: {err.public()}")
        if not getattr(sink, "alive", True):
            problems.append("the sink's writer thread has stopped: nothing can be written")
        status = 503 if problems else 200
        try:
            tenant = _tenant(request, tokens)
        except TokenFileError:
            tenant = None
        if tenant is None:
            return JSONResponse({"status": "refusing" if problems else "ok"}, status_code=status)
        body = {"status": "refusing" if problems else "ok",
                "problems": [f"{p} — posts are refused (503) until this is fixed" for p in problems],
                "node": getattr(sink, "node", None), "recovered_segments": getattr(sink, "recovered", 0),
                "open_completions": live.stats(tenant), "bodies_held_bytes": budget.held}
        if connection_stats is not None:
            body["connections_closed"] = dict(connection_stats.closed)
        if served is not None:
            body["serving"] = await served.health(tenant)
        return JSONResponse(body, status_code=status)

    async def close_open(everything: bool = False) -> None:
        """Writes the closes of idle files' open completions (of every file's, when the server stops:
        nothing more can reach them). A failure is logged: the sweeps must go on."""
        try:
            closed = await off_loop(lambda: made_here(live.sweep(everything)))
            if closed:
                await commit([line for line, _ in closed])
        except Exception:
            log.exception("closing open completions failed")

    async def sweep_forever() -> None:
        while True:
            await asyncio.sleep(settings.sweep_s)
            await close_open()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        sweeper = asyncio.create_task(sweep_forever())
        log.info(json.dumps({"msg": "started", "node": getattr(sink, "node", None),
                             "recovered_segments": getattr(sink, "recovered", 0)}))
        try:
            yield
        finally:
            sweeper.cancel()
            await close_open(everything=True)
            if completions is not None:
                await asyncio.to_thread(completions.close)
            await asyncio.to_thread(pool.shutdown)
            await asyncio.to_thread(sink.close)
            log.info(json.dumps({"msg": "stopped"}))

    app = Starlette(routes=[Route("/v1/events", events_route, methods=["POST"]),
                            Route("/v1/continue", continue_route, methods=["POST"]),
                            Route("/healthz", health, methods=["GET"]),
                            *(served.routes() if served is not None else [])], lifespan=lifespan)
    app.state.live = live  # the open completions, for the operator's debugger and the tests
    return app


def _tenant(request: Request, tokens: TokenStore) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return tokens.tenant_for(token.strip()) if scheme.lower() == "bearer" and token.strip() else None


def _answer(route: str, started: float, tenant: str | None, status: int, body: dict,
            headers: dict | None = None, detail: str | None = None) -> JSONResponse:
    entry = {"msg": "request", "route": route, "tenant": tenant, "status": status, "accepted": body.get("accepted"),
             "ms": round((time.perf_counter() - started) * 1000, 2), "error": body.get("error")}
    if body.get("errors"):
        entry["reasons"] = sorted({e["reason"] for e in body["errors"]})
    if detail:
        entry["detail"] = detail
    log.info(json.dumps(entry))
    if route in OPENAI_ROUTES and isinstance(body.get("error"), str):  # the shape OpenAI's clients read
        kind = "authentication_error" if status == 401 else "invalid_request_error" if status < 500 else "server_error"
        body = {**body, "error": {"message": body["error"], "type": kind, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)
