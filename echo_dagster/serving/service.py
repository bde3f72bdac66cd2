"""What `echo-dagster serve` answers completions with: the champion of each request's tenant, through
one `Batcher`.

A tenant whose policy is `own` is served its own champion (the base model until it has one); every
other tenant the shared champion. The base model is loaded once and shared.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from dataclasses import dataclass
from pathlib import Path

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
    max_lines: int = 4
    context_tokens: int = 192
    batch_size: int = 16  # requests decoded together
    max_waiting: int = 64  # requests queued for the model; beyond, 503 with Retry-After
    poll_s: float = 5.0  # how often the champion pointer is read
    precision: str = "auto"
    device: str = "auto"
    # auto: ctranslate2 on a CPU (int8, one request at a time: the lowest latency for a client there),
    # transformers where there is a GPU (bf16, concurrent requests batched).
    engine: str = "auto"


class Busy(Exception):
    """More requests wait for the model than `max_waiting`."""


class Completions:
    def __init__(self, registry: Registry, base_spec: str, models_dir: str | Path, policy,
                 settings: ServeSettings = ServeSettings()):
        """`policy()`: the current `TenantPolicy` (raises `tenancy.PolicyError` while unreadable)."""
        self.registry, self.policy, self.settings = registry, policy, settings
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
        self._lock = threading.Lock()
        self.shared = ChampionFollower(registry, self._base, self._load, poll_s=settings.poll_s)
        self._own: dict[str, ChampionFollower] = {}
        self.waiting = 0

    def _base(self) -> LoadedModel:
        with self._lock:
            if self._base_model is None:
                self._base_model = self._load(self._base_spec)
            return self._base_model

    def follower(self, tenant: str, policy: TenantPolicy) -> ChampionFollower:
        if policy.of(tenant) != "own":
            return self.shared
        with self._lock:
            found = self._own.get(tenant)
        if found is None:
            found = ChampionFollower(self.registry, self._base, self._load, tenant=tenant, poll_s=self.settings.poll_s)
            with self._lock:
                found = self._own.setdefault(tenant, found)
        return found

    async def complete(self, asked: Asked, tenant: str, policy: TenantPolicy, on_text=None) -> Job:
        """The finished job (its `text`, `model.name`, `error`); `on_text(text)` is called on the
        event loop as a one-line proposal grows."""
        if self.waiting >= self.settings.max_waiting:
            raise Busy(f"{self.waiting} requests wait for the model")
        loop = asyncio.get_running_loop()
        follower = await asyncio.to_thread(self.follower, tenant, policy)
        finished = loop.create_future()
        limit = min(asked.max_tokens or self.settings.max_new_tokens, self.settings.max_new_tokens)
        job = Job(asked.request, follower.current, limit, asked.stop, asked.temperature, asked.seed,
                  on_text=(lambda text: loop.call_soon_threadsafe(on_text, text)) if on_text else None,
                  on_done=lambda: loop.call_soon_threadsafe(_settle, finished))
        self.waiting += 1
        try:
            self.batcher.submit(job)
            await finished
        finally:
            self.waiting -= 1
        if job.error is not None:
            raise job.error
        return job

    def models(self) -> list[str]:
        with self._lock:
            own = list(self._own.values())
        return [self.shared.current.name] + [f.current.name for f in own]

    def close(self) -> None:
        for follower in [self.shared, *self._own.values()]:
            follower.close()
        self.batcher.close()


def _settle(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
