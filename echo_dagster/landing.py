"""The landing zone: `<root>/<YYYY-MM-DD>/<anything>.jsonl[.gz]`, a local folder or `s3://bucket/prefix`.

Both stores list a day's files in a stable order and open them as binary streams, so ingestion
does not care where the files live. A listed entry that must not be read — not a regular file (a
FIFO would block the reader for ever), a link that leads out of the landing zone, a name that is
not UTF-8 — carries its `problem`, so that ingestion quarantines it with that reason instead of
failing or skipping it silently.
"""

from __future__ import annotations

import fcntl
import io
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import BinaryIO, Callable, Protocol

from echo_dagster import env

EVENT_SUFFIXES = (".jsonl", ".jsonl.gz")


# Why a listed entry is not read (ingest.reader.FILE_REASONS).
NOT_A_FILE, OUTSIDE_LANDING, BAD_NAME = "not_a_regular_file", "link_outside_landing", "file_name_not_utf8"


@dataclass(frozen=True, order=True)
class LandingFile:
    day: date
    name: str  # relative to the landing root: "2026-11-20/ide-7.jsonl.gz" (a non-UTF-8 name as os.fsdecode gives it)
    size: int
    problem: str | None = None  # NOT_A_FILE, OUTSIDE_LANDING or BAD_NAME: listed and counted, never read

    @property
    def label(self) -> str:
        """The name as text that can be stored anywhere: undecodable bytes written as \\xNN."""
        return os.fsencode(self.name).decode("utf-8", "backslashreplace")

    @property
    def compressed(self) -> bool:
        return self.name.endswith(".gz")

    @property
    def holds_events(self) -> bool:
        return self.name.endswith(EVENT_SUFFIXES)


class LandingStore(Protocol):
    url: str

    def list_day(self, day: date) -> list[LandingFile]: ...

    def open(self, file: LandingFile) -> BinaryIO: ...

    def write(self, name: str, data: bytes) -> None: ...

    def days(self) -> list[date]: ...

    def delete(self, file: LandingFile) -> None: ...

    def exists(self, file: LandingFile) -> bool: ...

    def open_segments(self) -> list[LandingFile]:
        """Files a capture server is still appending to, outside the day folders."""
        ...

    def segment_in_use(self, file: LandingFile) -> bool:
        """Whether a live capture server holds the segment (it publishes it into its day folder)."""
        ...


# The capture server's open segments: `<root>/_capture/<node>/<day>--<name>.jsonl`, published to
# `<root>/<day>/<name>.jsonl`; a live server holds `<root>/_capture/<node>/.lock` (flock).
CAPTURE_FOLDER = "_capture"
LOCK_FILE = ".lock"


def day_folder(day: date) -> str:
    return day.isoformat()


class LocalLandingStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.url = str(self.root)

    def list_day(self, day: date) -> list[LandingFile]:
        folder = self.root / day_folder(day)
        if not folder.is_dir():
            return []
        root = self.root.resolve()
        found = []
        for top, dirs, names in os.walk(folder):  # links to folders are listed, not followed
            for name in names + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
                path = Path(top, name)
                found.append(LandingFile(day, path.relative_to(self.root).as_posix(), *_examine(path, root)))
        return sorted(found)

    def open(self, file: LandingFile) -> BinaryIO:
        return open(self.root / file.name, "rb", buffering=1 << 20)

    def write(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)  # readers never see half a file

    def days(self) -> list[date]:
        if not self.root.is_dir():
            return []
        return sorted(d for p in self.root.iterdir() if p.is_dir() and (d := folder_day(p.name)))

    def delete(self, file: LandingFile) -> None:
        path = self.root / file.name
        path.unlink(missing_ok=True)
        if path.parent != self.root and not any(path.parent.iterdir()):
            path.parent.rmdir()

    def exists(self, file: LandingFile) -> bool:
        return (self.root / file.name).exists()

    def open_segments(self) -> list[LandingFile]:
        found = []
        for path in sorted((self.root / CAPTURE_FOLDER).glob("*/*.jsonl")):
            day = folder_day(path.name.split("--", 1)[0])
            if day is not None and path.is_file() and not path.is_symlink():
                found.append(LandingFile(day, path.relative_to(self.root).as_posix(), path.stat().st_size))
        return found

    def segment_in_use(self, file: LandingFile) -> bool:
        lock = (self.root / file.name).parent / LOCK_FILE
        try:
            fd = os.open(lock, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # releases the lock if it was taken
        return False


def _examine(path: Path, root: Path) -> tuple[int, str | None]:
    """(size, problem) of a local landing entry."""
    if path.is_symlink() and not path.resolve().is_relative_to(root):
        return 0, OUTSIDE_LANDING
    if not path.is_file():  # a FIFO, a socket, a device, a dangling link, a link to a folder
        return 0, NOT_A_FILE
    try:
        os.fsencode(path.name).decode("utf-8")
    except UnicodeDecodeError:
        return path.stat().st_size, BAD_NAME
    return path.stat().st_size, None


class S3LandingStore:
    """`client_factory` makes a boto3 S3 client (in the pipeline: dagster-aws' `S3Resource`). The
    store is picklable, so that worker processes can read files: each makes its own client."""

    def __init__(self, client_factory: Callable[[], object], bucket: str, prefix: str = ""):
        self.client_factory = client_factory
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = self.client_factory()
        return self._client

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client": None}

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def list_day(self, day: date) -> list[LandingFile]:
        folder = self._key(day_folder(day)) + "/"
        files = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(self.prefix) + 1 :] if self.prefix else obj["Key"]
                files.append(LandingFile(day, name, obj["Size"]))
        return sorted(files)

    def open(self, file: LandingFile) -> BinaryIO:
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(file.name))["Body"]
        return io.BufferedReader(_StreamingRaw(body), buffer_size=1 << 20)

    def write(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)

    def days(self) -> list[date]:
        folder = self._key("") if self.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder, Delimiter="/")
        names = (p["Prefix"][len(folder):].rstrip("/") for page in pages for p in page.get("CommonPrefixes", []))
        return sorted(d for name in names if (d := folder_day(name)))

    def delete(self, file: LandingFile) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(file.name))

    def exists(self, file: LandingFile) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(file.name))
        except ClientError:
            return False
        return True

    def open_segments(self) -> list[LandingFile]:
        return []  # a capture server writes each group of events to S3 as an object of its day

    def segment_in_use(self, file: LandingFile) -> bool:
        return False


class _StreamingRaw(io.RawIOBase):
    """Adapts botocore's StreamingBody so that the file streams line by line, never whole."""

    def __init__(self, body):
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._body.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        self._body.close()
        super().close()


def open_store(url: str, s3_client_factory: Callable[[], object] | None = None) -> LandingStore:
    """The landing zone at `url`: a folder, or `s3://bucket/prefix` through `s3_client_factory`
    (default: boto3's credential chain, with `ECHO_S3_ENDPOINT_URL`). It must pickle: worker
    processes make their own clients."""
    if url.startswith("s3://"):
        bucket, prefix = parse_s3_url(url)
        return S3LandingStore(s3_client_factory or default_s3_client, bucket, prefix)
    return LocalLandingStore(url)


def default_s3_client():
    import boto3

    return boto3.client("s3", endpoint_url=env.s3_endpoint_url())


def folder_day(name: str) -> date | None:
    """The day a folder named by `day_folder` holds, or None for anything else (the capture
    server's `_capture/`)."""
    try:
        return date.fromisoformat(name) if len(name) == 10 else None
    except ValueError:
        return None


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise ValueError(f"expected an s3://bucket/prefix URL, got {url!r}")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in S3 URL {url!r}: expected s3://bucket/prefix")
    return bucket, prefix
