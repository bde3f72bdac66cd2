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
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from echo_dagster.clients.implicit import shown_events
from echo_dagster.capture.tokens import token_user
from echo_dagster.clients.records import ClientCompletion, pseudonym
from echo_dagster.optout import OptOut
from echo_dagster.serving import protocols
from echo_dagster.serving.service import Busy, Completions
from echo_dagster.tenancy import PolicyError

log = logging.getLogger("echo_dagster.capture")
DECIDABLE = 1 << 16  # served completions remembered for their client's events (oldest forgotten first)
TABBY_API_VERSION = "v0.21.0"  # the Tabby server whose API this answers as


@dataclass
class _Served:
    """What a served completion's later events need of it (not its window: memory)."""
    completion: ClientCompletion  # prefix and suffix emptied
    tenant: str
    prefix_chars: int
    suffix_chars: int
    decided: bool = False


class ServedCompletions:
    """The routes, given the capture app's request pipeline (`handle`), its writers (`write_events`:
    events made here → how many were written; `write_completion`: a completion, with the implicit
    snapshots it gives and the closes it causes) and its refusal (an exception answered at once)."""

    def __init__(self, completions: Completions, policy, handle, write_events, write_completion, refusal):
        self.completions, self.policy, self.handle, self.refusal = completions, policy, handle, refusal
        self.write_events, self.write_completion = write_events, write_completion
        self._served: OrderedDict[str, _Served] = OrderedDict()
        self.counts = {"served": 0, "events": 0, "unknown_completion": 0}

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
            model = follower.current.name
            return 200, {"object": "list", "data": [{"id": model, "object": "model", "created": 0,
                                                     "owned_by": "echo-dagster"}]}
        return await self.handle(request, "models", listing)

    async def health_route(self, request: Request):
        # Tabby's health state, as its agent (1.5) reads it: `version.git_describe` must be there (the
        # agent dies without it) and at least 0.9.0 for it to ask for the server setting.
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        return JSONResponse({"model": self.completions.shared.current.name, "device": device, "arch": "x86_64",
                             "cpu_info": "", "cpu_count": 0, "cuda_devices": [], "chat_model": None,
                             "version": {"build_date": "", "build_timestamp": "", "git_sha": "",
                                         "git_describe": TABBY_API_VERSION},
                             "webserver": False})

    async def server_setting_route(self, request: Request):
        return JSONResponse({"disable_client_side_telemetry": False})

    # -- Tabby's events, which share /v1/events with schema-v1 events

    async def tabby_event(self, request: Request, payload: dict, tenant: str, listed: OptOut) -> tuple[int, dict]:
        try:
            event = protocols.tabby_event(payload, request.query_params.get("select_kind"))
        except protocols.ProtocolError as err:
            raise self.refusal(400, str(err)) from None
        self.counts["events"] += 1
        found = self._served.get(event.completion_id)
        if found is None or found.tenant != tenant:  # never another tenant's completion
            self.counts["unknown_completion"] += 1
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

    def _inferred(self, events: list, tenant: str) -> list[dict]:
        """Decisions of undecided OpenAI completions that a request's snapshots show (see above)."""
        decisions = []
        for event in events:
            if event.event != "document_snapshot" or not event.session_id.startswith("openai:"):
                continue
            found = self._served.get(event.session_id.partition(":")[2])
            if found is None or found.tenant != tenant or found.decided:
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
        except PolicyError as err:
            raise self.refusal(503, f"the tenant policy cannot be read, so no model can be chosen: {err}",
                               {"Retry-After": "30"}) from None

    async def _complete(self, request: Request, body: bytes, tenant: str, listed: OptOut):
        started = time.perf_counter()
        try:
            asked = await asyncio.to_thread(protocols.completion_request, body)
        except protocols.ProtocolError as err:
            raise self.refusal(400, str(err)) from None
        policy = self._policy()
        cid = protocols.completion_id()
        self._room(tenant)  # before a stream's headers go out: a refusal is still a 503
        if asked.stream:
            return 200, StreamingResponse(self._stream(asked, cid, tenant, policy, listed, request, started),
                                          media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        job = await self._run(asked, tenant, policy)
        await self._keep(request, asked, cid, job, tenant, listed, started)
        if asked.api == "tabby":
            return 200, protocols.tabby_response(cid, job.text)
        return 200, protocols.openai_response(cid, job.model.name, job.text, job.finish_reason, job.prompt_tokens,
                                              job.completion_tokens)

    def _room(self, tenant: str) -> None:
        try:
            self.completions.check_room(tenant)
        except Busy as busy:
            raise self.refusal(503, f"{busy}: retry in a second", {"Retry-After": "1"}) from None

    async def _run(self, asked, tenant, policy, on_text=None):
        try:
            return await self.completions.complete(asked, tenant, policy, on_text)
        except Busy as busy:
            raise self.refusal(503, f"{busy}: retry in a second", {"Retry-After": "1"}) from None

    async def _stream(self, asked, cid, tenant, policy, listed, request, started):
        pieces: asyncio.Queue = asyncio.Queue()
        sent = ""
        task = asyncio.ensure_future(self._run(asked, tenant, policy, lambda *piece: pieces.put_nowait(piece)))
        task.add_done_callback(lambda _: pieces.put_nowait(None))
        # Kept once answered, whether or not the client stays for the end of the stream.
        keeping = asyncio.ensure_future(self._keep_when_done(task, request, asked, cid, tenant, listed, started))
        while (piece := await pieces.get()) is not None:
            text, model = piece  # the model answering, named in every chunk
            if len(text) > len(sent):
                yield protocols.openai_chunk(cid, model, text[len(sent):], None)
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
            yield protocols.openai_chunk(cid, job.model.name, job.text[len(sent):], None)
        yield protocols.openai_chunk(cid, job.model.name, "", job.finish_reason)
        yield protocols.STREAM_END
        await asyncio.shield(keeping)

    async def _keep_when_done(self, task, request, asked, cid, tenant: str, listed: OptOut, started: float) -> None:
        try:
            job = await task
        except Exception:
            return  # nothing was proposed (the stream says why)
        await self._keep(request, asked, cid, job, tenant, listed, started)

    async def _keep(self, request, asked, cid, job, tenant: str, listed: OptOut, started: float) -> None:
        """Writes the completion as shown and remembers it for its client's events."""
        now = datetime.now(timezone.utc)
        agent = request.headers.get("user-agent", "")
        completion = ClientCompletion(
            client=asked.api, completion_id=cid, shown_ts=now, decided_ts=now,
            user_id=pseudonym(asked.api, asked.user) if asked.user else token_user(asked.api, _bearer(request)),
            path=asked.path, repo=asked.repo,
            language=asked.request.language if asked.request.language != "unknown" else None,
            client_version=agent[:80] or None, model=job.model.name, prefix=asked.request.prefix,
            suffix=asked.request.suffix, proposal=job.text,
            latency_ms=round((time.perf_counter() - started) * 1000, 2), decision=None)
        self.counts["served"] += 1
        if listed.covers(completion.user_id, tenant):
            return
        self._served[cid] = _Served(replace(completion, prefix="", suffix=""), tenant, len(completion.prefix),
                                    len(completion.suffix))
        while len(self._served) > DECIDABLE:
            self._served.popitem(last=False)
        events = await self.write_completion(completion, tenant, listed)
        if inferred := self._inferred(events, tenant):
            await self.write_events(inferred, listed)


def _bearer(request: Request) -> str:
    return request.headers.get("authorization", "").partition(" ")[2].strip()
