"""What `echo-dagster serve` answers completions with: the champion of each request's tenant, through
one decoding thread (`Batcher`, or `ct2.SerialDecoder`).

A tenant whose policy is `own` is served its own champion (the base model until it has one); every
other tenant the shared champion. The base model is loaded once and shared.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from echo_dagster.completion import MAX_LINES
from echo_dagster.model.generation import GenerationConfig
from echo_dagster.model.loading import LoadedModel, load_model
from echo_dagster.serving import ct2
from echo_dagster.serving.batcher import Batcher, Job
from echo_dagster.serving.ct2 import SerialDecoder
from echo_dagster.serving.champion import ChampionFollower
from echo_dagster.serving.protocols import Asked
from echo_dagster.tenancy import TenantPolicy
from echo_dagster.training.registry import Registry


@dataclass(frozen=True)
class ServeSettings:
    max_new_tokens: int = 32  # the most a proposal may take, whatever a client asks
    max_lines: int = MAX_LINES
    context_tokens: int = 192
    batch_size: int = 16  # requests decoded together
    max_waiting: int = 64  # requests queued for the model; beyond, 503 with Retry-After
    tenant_waiting: int = 16  # of them, one tenant's: no tenant keeps the others waiting
    poll_s: float = 5.0  # how often the champion pointer is read
    precision: str = "auto"
    device: str = "auto"
    # auto: ctranslate2 on a CPU (int8, one request at a time: the lowest latency for a client there),
    # transformers where there is a GPU (bf16, concurrent requests batched).
    engine: str = "auto"


class Busy(Exception):
    """More requests wait for the model than `max_waiting`, or than `tenant_waiting` of a tenant."""


class Unservable(ValueError):
    """A request the engine cannot serve as asked, found only as it is served (an upstream's 400):
    answered 400 with this message."""


class Champions:
    """Each tenant's champion and the requests waiting for a model: what every engine shares.
    `_follower(tenant)` makes the follower of a tenant (None: the shared champion)."""

    def __init__(self, registry: Registry, settings: ServeSettings):
        self.registry, self.settings = registry, settings
        self._lock = threading.Lock()
        self._creating = threading.Lock()  # one follower made at a time: no two load the same model
        self._own: dict[str, ChampionFollower] = {}
        self.waiting: Counter = Counter()  # tenant -> requests waiting; used on the event loop only
        self.shared = self._follower(None)

    def _follower(self, tenant: str | None) -> ChampionFollower:
        raise NotImplementedError

    def follower(self, tenant: str, policy: TenantPolicy) -> ChampionFollower:
        """The follower of the champion serving `tenant` (made, and its model loaded, on its first
        request: call it off the event loop). One per tenant whose policy is `own`: the tenants an
        operator named, never more."""
        if policy.of(tenant) != "own":
            return self.shared
        with self._creating:
            with self._lock:
                found = self._own.get(tenant)
            if found is None:
                found = self._follower(tenant)
                with self._lock:
                    self._own[tenant] = found
        return found

    def made_follower(self, tenant: str, policy: TenantPolicy) -> ChampionFollower | None:
        """The follower serving `tenant` where it is made already (None: at its first request)."""
        if policy.of(tenant) != "own":
            return self.shared
        with self._lock:
            return self._own.get(tenant)

    def check_room(self, tenant: str) -> None:
        total = sum(self.waiting.values())
        if total >= self.settings.max_waiting:
            raise Busy(f"{total} requests wait for the model")
        if self.waiting[tenant] >= self.settings.tenant_waiting:
            raise Busy(f"{self.waiting[tenant]} requests of this tenant wait for the model")

    def admit(self, tenant: str) -> "Admission":
        """A place among the requests waiting for the model, taken now (Busy when there is none), so
        that a stream is refused before its headers go out; given back once (`release`)."""
        self.check_room(tenant)
        self.waiting[tenant] += 1
        return Admission(self, tenant)

    def refusal(self, asked: Asked) -> str | None:
        """Why this engine cannot serve a request as asked (answered 400 before anything is made), or None."""
        return None

    def close(self) -> None:
        with self._lock:
            followers = [self.shared, *self._own.values()]
        for follower in followers:
            follower.close()


class Admission:
    """A request's place in `Champions.waiting`; used on the event loop only."""

    def __init__(self, champions: Champions, tenant: str):
        self._champions, self.tenant, self._held = champions, tenant, True

    def release(self) -> None:
        if self._held:
            self._held = False
            waiting = self._champions.waiting
            waiting[self.tenant] -= 1
            if not waiting[self.tenant]:
                del waiting[self.tenant]

    def __enter__(self) -> "Admission":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Completions(Champions):
    def __init__(self, registry: Registry, base_spec: str, models_dir: str | Path,
                 settings: ServeSettings = ServeSettings()):
        config = GenerationConfig(context_tokens=settings.context_tokens, max_new_tokens=settings.max_new_tokens,
                                  max_lines=settings.max_lines, batch_size=settings.batch_size)
        engine = settings.engine
        if engine == "auto":
            import torch

            engine = "transformers" if settings.device != "cpu" and torch.cuda.is_available() else "ctranslate2"
        self.engine = engine
        if engine == "ctranslate2":
            load = functools.partial(ct2.load, models_dir=models_dir)
            self.batcher = SerialDecoder(config)
        elif engine == "transformers":
            load = functools.partial(load_model, models_dir=models_dir, device=settings.device,
                                     precision=settings.precision)
            self.batcher = Batcher(config)
        else:
            raise ValueError(f"engine {engine!r}: expected auto, transformers or ctranslate2")
        self._load = lambda folder: load(str(folder))
        self._base_spec, self._base_model = base_spec, None
        self._base_lock = threading.Lock()
        super().__init__(registry, settings)

    def _base(self) -> LoadedModel:
        with self._base_lock:
            if self._base_model is None:
                self._base_model = self._load(self._base_spec)
            return self._base_model

    def _follower(self, tenant: str | None) -> ChampionFollower:
        return ChampionFollower(self.registry, self._base, self._load, tenant=tenant, poll_s=self.settings.poll_s)

    def refusal(self, asked: Asked) -> str | None:
        if self.engine == "ctranslate2" and asked.temperature > 0 and asked.seed is not None:
            # CTranslate2 4.8 seeds each thread's generator once, at its first use: a seed per request
            # cannot be honoured, and one silently ignored would break the promise of the same text.
            return ("field 'seed': the ctranslate2 engine cannot seed sampling per request; leave 'seed' out, "
                    "ask for temperature 0 (greedy: the same text every time), or serve with --engine transformers")
        return None

    async def complete(self, asked: Asked, tenant: str, policy: TenantPolicy, on_text=None,
                       admission: Admission | None = None) -> Job:
        """The finished job (its `text`, `model.name`, `error`); `on_text(text, model name)` is called
        on the event loop as a one-line proposal grows. `admission`: the request's place, taken
        before (else taken here)."""
        loop = asyncio.get_running_loop()
        with admission or self.admit(tenant):
            follower = await asyncio.to_thread(self.follower, tenant, policy)
            finished = loop.create_future()
            job = Job(asked.request, follower.current, max_tokens(asked, self.settings), asked.stop,
                      asked.temperature, asked.seed, on_done=lambda: loop.call_soon_threadsafe(_settle, finished))
            if on_text is not None:
                job.on_text = lambda text: loop.call_soon_threadsafe(on_text, text, job.model.name)
            self.batcher.submit(job)
            await finished
        if job.error is not None:
            raise job.error
        return job

    def close(self) -> None:
        super().close()
        self.batcher.close()


def max_tokens(asked: Asked, settings: ServeSettings) -> int:
    return min(asked.max_tokens or settings.max_new_tokens, settings.max_new_tokens)


def _settle(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
