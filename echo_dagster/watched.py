"""A file that may change while a server runs: parsed again whenever it changes.

A parse error is kept as the file's value until the file changes again, so that every caller
hears of it — a server must refuse what it cannot check rather than trust an older version of the
file (which would keep a revoked token alive or forget an opt-out).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class FileProblem(ValueError):
    """Why a file cannot be used. Its message names the file by its full path, for the operator's log
    and command line; `public()` names it by its name alone, for answers to clients, who must not
    learn the server's paths."""

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(message)
        self.path = path

    def public(self) -> str:
        text = str(self)
        return text.replace(str(self.path), Path(self.path).name) if self.path else text


class WatchedFile(Generic[T]):
    def __init__(self, path: str | Path, parse: Callable[[Path], T], errors: tuple[type[Exception], ...]):
        """`parse(path)` reads the file (a missing one too); it raises one of `errors` for a bad file."""
        self.path = Path(path)
        self._parse, self._errors = parse, errors
        self._lock = threading.Lock()
        self._seen: tuple | None = ()  # never a stat's value: the first call parses
        self._value: T | Exception | None = None

    def value(self) -> T:
        value = self._refresh()
        if isinstance(value, self._errors):
            raise value
        return value

    def problem(self) -> Exception | None:
        """Why the file cannot be used, or None."""
        value = self._refresh()
        return value if isinstance(value, self._errors) else None

    def _refresh(self) -> T | Exception:
        try:
            stat = os.stat(self.path)
            seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except FileNotFoundError:
            seen = None
        with self._lock:
            if seen != self._seen:
                try:
                    self._value = self._parse(self.path)
                except self._errors as err:
                    self._value = err
                self._seen = seen
            return self._value
