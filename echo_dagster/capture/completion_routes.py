"""Completions served from the champion, captured where they are served.

Every proposal answered is written as a schema-v1 `completion_shown` (the exact prefix and suffix
the client sent, the proposal, the model that answered, the latency); Tabby's `select` and
`dismiss` become `completion_accepted` (the choice, or its first line for `select_kind=line`) and
`completion_rejected`; later requests in the same file give the earlier completions' implicit
snapshots (`clients.implicit.LiveStreams`), so what the user finally kept reaches the harvest with
nothing typed twice. An opted-out user is served and nothing of theirs is kept.

OpenAI's API has no events: a completion served through it is decided by what its file shows next
(the first implicit snapshot): accepted where the proposal stands at the cursor, else rejected
(`typed_over`) — as the Tabby importer infers decisions its log lacks.

Sessions are named `tabby:<id>` or `openai:<id>`, like the imports of those clients' logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from echo_dagster.capture import bodies
from echo_dagster.capture.tokens import token_user
from echo_dagster.clients.implicit import shown_events
from echo_dagster.clients.records import ClientCompletion, pseudonym
from echo_dagster.events import MAX_LINE_BYTES, EventError, parse_event
from echo_dagster.optout import OptOut
from echo_dagster.serving import protocols
from echo_dagster.serving.service import Busy, Completions, Unservable
from echo_dagster.tenancy import PolicyError

log = logging.getLogger("echo_dagster.capture")
DECIDABLE = 1 << 16  # served completions of a tenant remembered for their client's events (oldest forgotten first)
TABBY_API_VERSION = "v0.21.0"  # the Tabby server whose API this answers as
# Room left in a landing line, beyond a request's window, for what the server adds to its
# completion_shown: ids, names, the model's, and the proposal (a token is rarely 100 bytes, at
# most 6 bytes a character as JSON escapes it).
PROPOSAL_RESERVE_BYTES = 16 << 10
BYTES_PER_TOKEN = 1 << 10


@dataclass
class _Served:
    """What a served completion's later events need of it (not its window: memory)."""
    completion: ClientCompletion  # prefix and suffix emptied
    tenant: str
    token: str  # the token that asked, as a hash: only its holder decides the completion
    prefix_chars: int
    suffix_chars: int
    window: bytes  # a digest of (prefix, suffix): a later request with the same window is a retry
    decided: bool = False


class ServedCompletions:
    """The routes, given the capture app's request pipeline (`handle`), its writers (`write_events`:
    events made here → how many were written; `write_completion`: a completion, with the implicit
    snapshots it gives and the closes it causes) and its refusal (an exception answered at once)."""

    def __init__(self, completions: Completions, policy, handle, write_events, write_completion, refusal):
        self.completions, self.policy, self.handle, self.refusal = completions, policy, handle, refusal
        self.write_events, self.write_completion = write_events, write_completion
        self._served: dict[str, _Served] = {}
        # Per tenant, its served completions oldest first: one tenant's traffic never pushes out
        # another's completions before their events come.
        self._order: defaultdict[str, OrderedDict] = defaultdict(OrderedDict)
        self.counts: defaultdict[str, Counter] = defaultdict(Counter)  # tenant -> served, events, unknown_completion, other_token

    def routes(self) -> list[Route]:
        return [Route("/v1/completions", self.completions_route, methods=["POST"]),
                Route("/v1/models", self.models_route, methods=["GET"]),
                Route("/v1/health", self.health_route, methods=["GET", "POST"]),
                Route("/v1beta/server_setting", self.server_setting_route, methods=["GET"])]

    # -- routes

    async def completions_route(self, request: Request):
        return await self.handle(request, "completions", lambda body, tenant, listed:
                                 self._complete(request, body, tenant, listed))

    async def models_route(self, request: Request):
        async def listing(body, tenant, listed):
            # A tenant's first request may load its model: off the event loop.
            follower = await asyncio.to_thread(self.completions.follower, tenant, self._policy())
            model = public_name(follower.current.name)
            return 200, {"object": "list", "data": [{"id": model, "object": "model", "created": 0,
                                                     "owned_by": "echo-dagster"}]}
        return await self.handle(request, "models", listing)

    async def health_route(self, request: Request):
        # Tabby's health state, as its agent (1.5) reads it: `version.git_describe` must be there (the
        # agent dies without it) and at least 0.9.0 for it to ask for the server setting.
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        return JSONResponse({"model": public_name(self.completions.shared.current.name), "device": device, "arch": "x86_64",
                             "cpu_info": "", "cpu_count": 0, "cuda_devices": [], "chat_model": None,
                             "version": {"build_date": "", "build_timestamp": "", "git_sha": "",
                                         "git_describe": TABBY_API_VERSION},
                             "webserver": False})

    async def server_setting_route(self, request: Request):
        return JSONResponse({"disable_client_side_telemetry": False})

    async def health(self, tenant: str) -> dict:
        """What `/healthz` shows a token of `tenant` of the serving: its own model, swaps, requests
        waiting and counts, the requests waiting in all; nothing of another tenant."""
        try:
            follower, problem = self.completions.made_follower(tenant, self.policy()), None
        except PolicyError:
            follower, problem = None, "the tenant policy cannot be read: completions are refused (503)"
        waiting = self.completions.waiting
        answer = {"engine": getattr(self.completions, "engine", "upstream"),
                  "model": public_name(follower.current.name) if follower else None,
                  "swaps": [s | {"from": public_name(s["from"]), "to": public_name(s["to"])}
                            for s in follower.swaps[-5:]] if follower else [],
                  "waiting": {"tenant": waiting[tenant], "all": sum(waiting.values())},
                  **{k: self.counts[tenant][k] for k in ("served", "events", "unknown_completion", "other_token")}}
        if problem or (follower and follower.problem):
            answer["problem"] = problem or follower.problem
        return answer

    # -- Tabby's events, which share /v1/events with schema-v1 events

    async def tabby_event(self, request: Request, payload: dict, tenant: str, listed: OptOut) -> tuple[int, dict]:
        try:
            event = protocols.tabby_event(payload, request.query_params.get("select_kind"))
        except protocols.ProtocolError as err:
            raise self.refusal(400, str(err)) from None
        self.counts[tenant]["events"] += 1
        found = self._served.get(event.completion_id)
        if found is None or found.tenant != tenant:  # never another tenant's completion
            self.counts[tenant]["unknown_completion"] += 1
            return 200, {"accepted": 0, "ignored": 1}
        if found.token != _token_of(request):  # nor another developer's (each has a token of their own)
            self.counts[tenant]["other_token"] += 1
            return 200, {"accepted": 0, "ignored": 1}
        if event.kind == "view" or found.decided or event.kind not in ("select", "dismiss"):
            return 200, {"accepted": 0, "ignored": 1}
        proposal = found.completion.proposal
        if event.kind == "select":
            decision = self._decide(found, "accepted", proposal.split("\n", 1)[0] if event.line_only else proposal)
        else:
            decision = self._decide(found, "rejected", reason="dismissed")
        written = await self.write_events(decision, listed)
        return 200, {"accepted": written, "opted_out": len(decision) - written, "ignored": 0}

    def _decide(self, served: _Served, decision: str, accepted_text: str | None = None, reason: str | None = None,
                at: datetime | None = None) -> list[dict]:
        served.decided = True
        decided = replace(served.completion, decided_ts=at or datetime.now(timezone.utc), decision=decision,
                          accepted_text=accepted_text, reject_reason=reason)
        return shown_events(decided, served.tenant)[1:]

    def _inferred(self, events: list, tenant: str, later: ClientCompletion) -> list[dict]:
        """Decisions of undecided OpenAI completions that a request's snapshots show (see above). A
        request with the very window of an earlier one (a client's retry) decides nothing: nothing
        shows whether the first answer was ever seen."""
        decisions = []
        for event in events:
            if event.event != "document_snapshot" or not event.session_id.startswith("openai:"):
                continue
            found = self._served.get(event.session_id.partition(":")[2])
            if found is None or found.tenant != tenant or found.decided:
                continue
            if _window(later) == found.window:
                continue
            region = event.document[found.prefix_chars: len(event.document) - found.suffix_chars]
            proposal = found.completion.proposal
            at = event.ts - timedelta(milliseconds=1)  # before the snapshot that showed it
            decisions += (self._decide(found, "accepted", proposal, at=at) if proposal and region.startswith(proposal)
                          else self._decide(found, "rejected", reason="typed_over", at=at))
        return decisions

    # -- completions

    def _policy(self):
        try:
            return self.policy()
        except PolicyError as err:  # its path is for the operator's log
            raise self.refusal(503, f"the tenant policy cannot be read, so no model can be chosen: {err.public()}",
                               {"Retry-After": "30"}, detail=str(err)) from None

    async def _complete(self, request: Request, body: bytes, tenant: str, listed: OptOut):
        """Everything a request asks is checked before anything is made of it: the fields, what the
        engine can do, that its completion fits a landing line; then a place among the requests
        waiting (a stream's refusal is still a 503, before its headers), the proposal, the capture."""
        started = time.perf_counter()
        try:
            asked = await asyncio.to_thread(protocols.completion_request, body)
        except protocols.ProtocolError as err:
            raise self.refusal(400, str(err)) from None
        if problem := self.completions.refusal(asked):
            raise self.refusal(400, problem)
        cid = protocols.completion_id()
        await asyncio.to_thread(self._check_capturable, request, asked, cid)
        policy = self._policy()
        try:
            admission = self.completions.admit(tenant)
        except Busy as busy:
            raise self.refusal(503, f"{busy}: retry in a second", {"Retry-After": "1"}) from None
        if not asked.stream:
            job = await self._run(asked, tenant, policy, None, admission)
            await self._keep(request, asked, cid, job, tenant, listed, started)
            if asked.api == "tabby":
                return 200, protocols.tabby_response(cid, job.text)
            return 200, protocols.openai_response(cid, public_name(job.model.name), job.text, job.finish_reason, job.prompt_tokens,
                                                  job.completion_tokens)
        # Started here, not in the stream: the place is held from now, and the proposal is kept
        # whether or not the client stays for the end of the stream.
        pieces: asyncio.Queue = asyncio.Queue()
        task = asyncio.ensure_future(self._run(asked, tenant, policy, lambda *piece: pieces.put_nowait(piece),
                                               admission))
        task.add_done_callback(lambda _: (admission.release(), pieces.put_nowait(None)))
        keeping = asyncio.ensure_future(self._keep_when_done(task, request, asked, cid, tenant, listed, started))
        return 200, StreamingResponse(self._stream(cid, task, pieces, keeping), media_type="text/event-stream",
                                      headers={"Cache-Control": "no-cache"})

    def _check_capturable(self, request: Request, asked, cid: str) -> None:
        """A 413 for a completion whose `completion_shown` could not be a landing line `raw_sessions`
        reads (what is served must be harvestable), a 400 for one the schema refuses."""
        shown = shown_events(self._completion(request, asked, cid, "-", "", 0.0), "-")[0]
        try:
            line = bodies.landing_line(shown)
            parse_event(line[:-1])
        except EventError as err:
            raise self.refusal(400, f"the completion cannot be recorded: {err}") from None
        room = MAX_LINE_BYTES - PROPOSAL_RESERVE_BYTES - self.completions.settings.max_new_tokens * BYTES_PER_TOKEN
        if len(line) > room:
            raise self.refusal(413, f"prefix and suffix take {len(line)} bytes as a landing line; at most {room} "
                                    f"(the landing zone's lines are at most {MAX_LINE_BYTES} bytes): send a "
                                    f"shorter window")

    async def _run(self, asked, tenant, policy, on_text, admission):
        try:
            return await self.completions.complete(asked, tenant, policy, on_text, admission)
        except Busy as busy:
            raise self.refusal(503, f"{busy}: retry in a second", {"Retry-After": "1"}) from None
        except Unservable as err:
            raise self.refusal(400, str(err)) from None

    async def _stream(self, cid: str, task: asyncio.Future, pieces: asyncio.Queue, keeping: asyncio.Future):
        sent = ""
        while (piece := await pieces.get()) is not None:
            text, model = piece  # the model answering, named in every chunk
            if len(text) > len(sent):
                yield protocols.openai_chunk(cid, public_name(model), text[len(sent):], None)
                sent = text
        try:
            job = task.result()
        except Exception as exc:
            if not isinstance(exc, self.refusal):
                log.exception("a streamed completion failed")
            error = exc.body["error"] if isinstance(exc, self.refusal) else "internal error (logged on the server)"
            yield b"data: " + json.dumps({"error": {"message": error}}).encode() + b"\n\n"
            return
        if len(job.text) > len(sent):
            yield protocols.openai_chunk(cid, public_name(job.model.name), job.text[len(sent):], None)
        yield protocols.openai_chunk(cid, public_name(job.model.name), "", job.finish_reason)
        yield protocols.STREAM_END
        await asyncio.shield(keeping)

    async def _keep_when_done(self, task, request, asked, cid, tenant: str, listed: OptOut, started: float) -> None:
        try:
            job = await task
        except Exception:
            return  # nothing was proposed (the stream says why)
        await self._keep(request, asked, cid, job, tenant, listed, started)

    def _completion(self, request: Request, asked, cid: str, model: str, proposal: str,
                    latency_ms: float) -> ClientCompletion:
        now = datetime.now(timezone.utc)
        agent = request.headers.get("user-agent", "")
        return ClientCompletion(
            client=asked.api, completion_id=cid, shown_ts=now, decided_ts=now,
            user_id=pseudonym(asked.api, asked.user) if asked.user else token_user(asked.api, _bearer(request)),
            path=asked.path, repo=asked.repo,
            language=asked.request.language if asked.request.language != "unknown" else None,
            client_version=agent[:80] or None, model=model, prefix=asked.request.prefix,
            suffix=asked.request.suffix, proposal=proposal, latency_ms=latency_ms, decision=None)

    async def _keep(self, request, asked, cid, job, tenant: str, listed: OptOut, started: float) -> None:
        """Writes the completion as shown and remembers it for its client's events; where the write
        fails, forgets it again (nothing of it is left to poison what comes later)."""
        completion = self._completion(request, asked, cid, job.model.name, job.text,
                                      round((time.perf_counter() - started) * 1000, 2))
        self.counts[tenant]["served"] += 1
        if listed.covers(completion.user_id, tenant):
            return
        self._served[cid] = _Served(replace(completion, prefix="", suffix=""), tenant, _token_of(request),
                                    len(completion.prefix), len(completion.suffix), _window(completion))
        order = self._order[tenant]
        order[cid] = None
        while len(order) > DECIDABLE:
            self._served.pop(order.popitem(last=False)[0], None)
        try:
            events = await self.write_completion(completion, tenant, listed)
        except BaseException:
            self._served.pop(cid, None)
            order.pop(cid, None)
            raise
        if inferred := self._inferred(events, tenant, completion):
            await self.write_events(inferred, listed)


def _bearer(request: Request) -> str:
    return request.headers.get("authorization", "").partition(" ")[2].strip()


def _window(completion: ClientCompletion) -> bytes:
    return hashlib.blake2b(f"{completion.prefix}\x00{completion.suffix}".encode(), digest_size=16).digest()


def public_name(model: str) -> str:
    """A model's name as a client sees it: a registry name or a spec as given, a path by its last
    part (the server's folders are the operator's)."""
    return Path(model).name if "/" in model or "\\" in model else model


def _token_of(request: Request) -> str:
    return token_user("token", _bearer(request))
