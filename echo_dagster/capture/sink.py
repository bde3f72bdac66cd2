"""Where the capture endpoint puts events before it answers: durably, in the landing zone.

One writer thread takes every batch waiting and commits them together (group commit): locally, an
append to the day's open segment and one fsync; on S3, one object. A request is answered only
once its batch is committed, so an acknowledged event survives a crash of the process or the
machine.

Local segments are written under `<landing>/_capture/<node>/`, outside the day folders that
`raw_sessions` reads, and moved into `<landing>/<arrival day>/` when they are `rotate_s` old,
`rotate_bytes` large, at shutdown, or — after a crash — at the next start, cut after their last
whole line (a line torn by the crash was never acknowledged). A lock file keeps two servers from
sharing a node name.
"""

from __future__ import annotations

import fcntl
import os
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from echo_dagster.landing import CAPTURE_FOLDER, LOCK_FILE, LandingStore, day_folder


@dataclass
class _Segment:
    day: str
    path: Path
    fd: int
    opened: float
    size: int = 0


class _GroupCommit:
    """The writer thread: `submit(lines)` returns a future that completes once they are durable."""

    def __init__(self, name: str):
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, lines: list[bytes]) -> Future:
        future: Future = Future()
        self._queue.put((lines, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    @property
    def alive(self) -> bool:
        """Whether the writer thread runs (the health check reports a dead one)."""
        return self._thread.is_alive()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._tick_s())
            except queue.Empty:
                self._idle()
                continue
            group, stop = [], first is None
            if first is not None:
                group.append(first)
            while not stop:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                stop = item is None
                if item is not None:
                    group.append(item)
            if group:
                # A request whose client went away cancelled its future: its lines are written all
                # the same (they were taken), and nobody is told.
                waiting = [(lines, future) for lines, future in group if future.set_running_or_notify_cancel()]
                try:
                    self._commit(datetime.now(timezone.utc), [line for lines, _ in group for line in lines])
                except BaseException as exc:  # every waiting request hears of it
                    for _, future in waiting:
                        future.set_exception(exc)
                else:
                    for lines, future in waiting:
                        future.set_result(len(lines))
            if stop:
                self._shutdown()
                return

    def _tick_s(self) -> float:
        return 1.0

    def _idle(self) -> None:
        pass

    def _commit(self, now: datetime, lines: list[bytes]) -> None:
        raise NotImplementedError

    def _shutdown(self) -> None:
        pass


class LocalSink(_GroupCommit):
    def __init__(self, root: str | Path, node: str, rotate_s: float = 60.0, rotate_bytes: int = 64 << 20):
        self.root = Path(root)
        self.node = node
        self.rotate_s, self.rotate_bytes = rotate_s, rotate_bytes
        self.open_dir = self.root / CAPTURE_FOLDER / node
        self.open_dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.open_dir / LOCK_FILE, "w")  # what an opt-out purge checks before rewriting a segment
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another capture server runs as node {node!r} on {self.root}") from None
        self.recovered = self._recover()
        self._segment: _Segment | None = None
        super().__init__(f"capture-sink-{node}")

    def _recover(self) -> int:
        """Segments left open by a crash, cut after their last whole line and moved into place."""
        moved = 0
        for path in sorted(self.open_dir.glob("*.jsonl")):
            data = path.read_bytes()
            keep = data.rfind(b"\n") + 1
            if keep < len(data):
                with open(path, "r+b") as f:
                    f.truncate(keep)
                    os.fsync(f.fileno())
            self._publish(path, path.name.split("--", 1)[0])
            moved += 1
        return moved

    def _commit(self, now: datetime, lines: list[bytes]) -> None:
        day = day_folder(now.date())
        segment = self._segment
        if segment is not None and segment.day != day:
            self._rotate()
        if self._segment is None:
            name = f"{day}--capture-{self.node}-{int(time.time() * 1000)}.jsonl"
            path = self.open_dir / name
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._segment = _Segment(day, path, fd, time.monotonic())
            _fsync_dir(self.open_dir)
        segment = self._segment
        data = b"".join(lines)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(segment.fd, view):]
            os.fsync(segment.fd)
        except BaseException:
            # Nothing of a failed group may stay: a torn line would swallow the next one.
            os.ftruncate(segment.fd, segment.size)
            raise
        segment.size += len(data)
        if segment.size >= self.rotate_bytes or time.monotonic() - segment.opened >= self.rotate_s:
            self._rotate()

    def _tick_s(self) -> float:
        return min(1.0, self.rotate_s)

    def _idle(self) -> None:
        if self._segment is not None and time.monotonic() - self._segment.opened >= self.rotate_s:
            self._rotate()

    def _rotate(self) -> None:
        segment, self._segment = self._segment, None
        if segment is not None:
            os.close(segment.fd)
            self._publish(segment.path, segment.day)

    def _publish(self, path: Path, day: str) -> None:
        target = self.root / day / path.name.split("--", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        _fsync_dir(target.parent)
        _fsync_dir(path.parent)

    def _shutdown(self) -> None:
        self._rotate()
        self._lock.close()


class StoreSink(_GroupCommit):
    """S3 (or any landing store): one object per group of requests, written before they are answered."""

    def __init__(self, store: LandingStore, node: str):
        self.store = store
        self.node = node
        self._n = 0
        super().__init__(f"capture-sink-{node}")

    def _commit(self, now: datetime, lines: list[bytes]) -> None:
        self._n += 1
        name = f"{day_folder(now.date())}/capture-{self.node}-{now.strftime('%H%M%S%f')}-{self._n:06d}.jsonl"
        self.store.write(name, b"".join(lines))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
