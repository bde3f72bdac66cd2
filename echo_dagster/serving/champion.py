"""The model a server answers with: the registry's champion, followed while the server runs.

A thread reads the champion pointer (`champion.json`, in a folder or on S3) every `poll_s`; when it
names another checkpoint, the thread loads that one beside the model serving (135M parameters take
a second or two and ~300 MB), then swaps the reference. Requests already decoding finish on the
model they started with; the next batch takes the new one. Until a champion exists, and for a
checkpoint that cannot be loaded (logged, retried at the next change), the base model serves. A
pointer that cannot be read (malformed, S3 down) leaves the model serving as it is, logged once and
shown as `problem` until it is readable again (a promotion rewrites it).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from echo_dagster.model.loading import LoadedModel
from echo_dagster.training.registry import Registry

log = logging.getLogger("echo_dagster.serving")


class ChampionFollower:
    def __init__(self, registry: Registry, base: Callable[[], LoadedModel], load: Callable[[Path], LoadedModel], *,
                 tenant: str | None = None, poll_s: float = 5.0):
        """`base()`: the base model (shared by every follower); `load(folder)`: a merged checkpoint."""
        self.registry, self._base, self._load_folder = registry, base, load
        self.tenant, self.poll_s = tenant, poll_s
        self.swaps: list[dict] = []  # {"from", "to", "load_s", "at"}
        self.problem: str | None = None  # why the pointer cannot be read now
        self._name = self._wanted(None)
        self._current = self._load(self._name) or self._base()  # a champion that will not load: the base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name=f"champion-{tenant or 'shared'}", daemon=True)
        self._thread.start()

    @property
    def current(self) -> LoadedModel:
        return self._current

    def close(self) -> None:
        self._stop.set()

    def check(self) -> bool:
        """Looks at the pointer now; True when the model was swapped."""
        wanted = self._wanted(self._name)
        if wanted == self._name:
            return False
        started = time.perf_counter()
        loaded = self._load(wanted)
        self._name = wanted  # a checkpoint that failed to load is not retried until the pointer moves
        if loaded is None:
            return False
        previous, self._current = self._current.name, loaded
        swap = {"from": previous, "to": loaded.name, "load_s": round(time.perf_counter() - started, 3),
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.swaps.append(swap)
        log.info(json.dumps({"msg": "champion swapped", "tenant": self.tenant, **swap}))
        return True

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check()
            except Exception:  # a checkpoint's download failing must not end the following
                log.exception("following the champion failed")

    def _wanted(self, serving: str | None) -> str | None:
        """The checkpoint the pointer names; `serving` while it cannot be read."""
        try:
            wanted = self.registry.champion(tenant=self.tenant)
        except Exception as err:  # malformed, or its store unreachable for a moment
            problem = f"the champion pointer cannot be read ({type(err).__name__}): still serving the model serving"
            if problem != self.problem:
                log.error(json.dumps({"msg": "champion pointer unreadable", "tenant": self.tenant, "error": str(err)}))
            self.problem = problem
            return serving
        self.problem = None
        return wanted

    def _load(self, name: str | None) -> LoadedModel | None:
        if name is None:
            return self._base()
        try:
            loaded = self._load_folder(self.registry.local(name) / "merged")
        except Exception:
            log.exception(f"champion {name!r} could not be loaded: still serving the previous model")
            return None
        return LoadedModel(name, loaded.model, loaded.tokenizer)
