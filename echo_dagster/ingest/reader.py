"""Read landing files line by line: every line becomes exactly one event or one quarantine record.

Streams: one line is in memory at a time (a line over the size limit is skipped in chunks), so a
day of any size reads in constant memory.
"""

from __future__ import annotations

import base64
import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from echo_dagster.events import Event, EventError, parse_event

# Reasons that concern a file rather than a line's content (events.REASONS has the rest).
FILE_REASONS = ("line_too_long", "gzip_truncated", "gzip_corrupt", "unsupported_file")


@dataclass(frozen=True, slots=True)
class Quarantined:
    line_no: int  # 1-based; 0 for a whole file that holds no events
    reason: str
    detail: str
    raw: bytes  # at most the preview limit


def read_records(
    stream: BinaryIO, *, compressed: bool, max_line_bytes: int, preview_bytes: int
) -> Iterator[tuple[int, Event | Quarantined]]:
    """Yield (line number, event or quarantine record) for every line of one landing file."""
    source: BinaryIO = gzip.GzipFile(fileobj=stream, mode="rb") if compressed else stream
    readline = source.readline
    limit = max_line_bytes + 2  # room for "\r\n"
    line_no = 0
    while True:
        try:
            line = readline(limit)
        except EOFError as exc:
            yield line_no + 1, Quarantined(
                line_no + 1, "gzip_truncated", f"gzip stream cut off after line {line_no}: {exc}", b""
            )
            return
        except (gzip.BadGzipFile, zlib.error) as exc:
            yield line_no + 1, Quarantined(
                line_no + 1, "gzip_corrupt", f"gzip data unreadable after line {line_no}: {exc}", b""
            )
            return
        if not line:
            return
        line_no += 1
        if len(line) == limit and not line.endswith(b"\n"):
            total = len(line) + _skip_rest_of_line(readline)
            yield line_no, Quarantined(
                line_no,
                "line_too_long",
                f"line of {total} bytes exceeds the limit of {max_line_bytes} bytes",
                line[:preview_bytes],
            )
            continue
        line = line.rstrip(b"\r\n")
        try:
            yield line_no, parse_event(line)
        except EventError as err:
            yield line_no, Quarantined(line_no, err.reason, err.message, line[:preview_bytes])


def _skip_rest_of_line(readline) -> int:
    skipped = 0
    while True:
        chunk = readline(1 << 20)
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return skipped


def preview_text(raw: bytes) -> tuple[str, str]:
    """(text, encoding) for storing a quarantined line: UTF-8 where it is, base64 where it is not
    (or where it holds NUL bytes, which text columns do not keep)."""
    if b"\x00" in raw:
        return base64.b64encode(raw).decode("ascii"), "base64"
    for cut in range(4):  # the preview may end inside a multi-byte character
        try:
            return raw[: len(raw) - cut].decode("utf-8"), "utf-8"
        except UnicodeDecodeError as err:
            if err.start < len(raw) - 4:
                break
    return base64.b64encode(raw).decode("ascii"), "base64"
