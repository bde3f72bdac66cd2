"""Read landing files: every line becomes exactly one event row or one quarantine record.

Two steps: `iter_blocks` cuts a file into blocks of whole lines (it handles the file-level
failures: a gzip stream cut off, a line longer than the limit that spans blocks), and
`validate_block` parses and validates the lines of one block into Arrow columns, which is where
the time goes. Both stream: memory is bounded by the block size and the line limit, never by the
size of a file or a day.
"""

from __future__ import annotations

import base64
import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow as pa

from echo_dagster.events import EventError, parse_event

# Reasons that concern a file rather than a line's content (events.REASONS has the rest).
FILE_REASONS = ("line_too_long", "gzip_truncated", "gzip_corrupt", "unsupported_file", "not_a_regular_file",
                "link_outside_landing", "file_name_not_utf8")


@dataclass(frozen=True, slots=True)
class Quarantined:
    line_no: int  # 1-based; 0 for a whole file that holds no events
    reason: str
    detail: str
    raw: bytes  # at most the preview limit


@dataclass(frozen=True, slots=True)
class Block:
    first_line: int
    data: bytes  # whole lines; only a file's last line may lack its newline


@dataclass(frozen=True)
class BlockResult:
    lines: int
    events: pa.Table | None  # one row per valid event, KEY_COLUMNS
    quarantined: list[Quarantined]


def iter_blocks(
    stream: BinaryIO, *, compressed: bool, block_bytes: int, max_line_bytes: int, preview_bytes: int
) -> Iterator[Block | Quarantined]:
    """Cut one file into blocks of whole lines, yielding a quarantine record for what cannot be read."""
    source: BinaryIO = gzip.GzipFile(fileobj=stream, mode="rb") if compressed else stream
    line_no = 1  # the number of the first line not handed out yet
    pending = b""  # data read but not handed out: whole lines, then at most one partial line
    overlong: tuple[bytes, int] | None = None  # (preview, bytes so far) while skipping a too-long line
    while True:
        try:
            # read1: at most one read underneath, so what came before a broken gzip stream is kept.
            chunk = source.read1(block_bytes)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            end = pending.rfind(b"\n") + 1
            if end:
                yield Block(line_no, pending[:end])
                line_no += pending.count(b"\n", 0, end)
            reason = "gzip_truncated" if isinstance(exc, EOFError) else "gzip_corrupt"
            preview = overlong[0] if overlong else pending[end:][:preview_bytes]
            yield Quarantined(line_no, reason, f"gzip stream unreadable after line {line_no - 1}: {exc}", preview)
            return
        if overlong is not None:
            end = chunk.find(b"\n")
            if chunk and end < 0:
                overlong = (overlong[0], overlong[1] + len(chunk))
                continue
            size = overlong[1] + end + 1 if chunk else overlong[1]
            yield _too_long(line_no, overlong[0], size, max_line_bytes)
            line_no += 1
            overlong = None
            chunk = chunk[end + 1 :]
        if not chunk:
            if pending:
                yield Block(line_no, pending)  # its last line lacks a newline
            return
        pending += chunk
        if len(pending) < block_bytes:
            continue
        end = pending.rfind(b"\n") + 1
        if end:
            yield Block(line_no, pending[:end])
            line_no += pending.count(b"\n", 0, end)
        pending = pending[end:]
        if len(pending) > max_line_bytes:
            overlong = (pending[:preview_bytes], len(pending))
            pending = b""


def _too_long(line_no: int, preview: bytes, size: int, max_line_bytes: int) -> Quarantined:
    return Quarantined(line_no, "line_too_long", f"line of {size} bytes exceeds the limit of {max_line_bytes} bytes",
                       preview)


# What Python keeps of a valid event: the keys that decide ownership, dedup, order and opt-out (as
# the validator read them), and the line itself, whose other fields DuckDB extracts when it writes.
# Identities are scoped by tenant: an event is (tenant_id, event_id), a session (tenant_id, session_id).
KEY_COLUMNS = pa.schema([
    ("tenant_id", pa.string()),
    ("user_id", pa.string()),
    ("event_id", pa.string()),
    ("session_id", pa.string()),
    ("event", pa.string()),
    ("ts", pa.timestamp("us")),  # naive UTC
    ("seq", pa.int64()),
    ("source_line", pa.int64()),
    ("line", pa.string()),
])


def validate_block(block: Block, *, max_line_bytes: int, preview_bytes: int) -> BlockResult:
    """Parse and validate every line of a block; valid events come back as Arrow columns."""
    lines = block.data.split(b"\n")
    if block.data.endswith(b"\n"):
        lines.pop()
    columns: tuple[list, ...] = tuple([] for _ in KEY_COLUMNS)
    tenant_ids, user_ids, event_ids, session_ids, kinds, stamps, seqs, numbers, texts = columns
    quarantined = []
    for line_no, line in enumerate(lines, block.first_line):
        if len(line) > max_line_bytes:
            quarantined.append(_too_long(line_no, line[:preview_bytes], len(line) + 1, max_line_bytes))
            continue
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            event = parse_event(line)
        except EventError as err:
            quarantined.append(Quarantined(line_no, err.reason, err.message, line[:preview_bytes]))
            continue
        tenant_ids.append(event.tenant_id)
        user_ids.append(event.user_id)
        event_ids.append(event.event_id)
        session_ids.append(event.session_id)
        kinds.append(event.event)
        stamps.append(event.ts)
        seqs.append(getattr(event, "seq", None))
        numbers.append(line_no)
        texts.append(line)
    if not numbers:
        return BlockResult(len(lines), None, quarantined)
    # Timestamps go in as UTC instants and lose only the zone label: cheaper than per-event replace().
    # The lines are valid UTF-8: the parser checked.
    arrays = [pa.array(c, pa.timestamp("us", tz="UTC")).cast(f.type) if f.name == "ts" else pa.array(c, f.type)
              for c, f in zip(columns, KEY_COLUMNS)]
    return BlockResult(len(lines), pa.Table.from_arrays(arrays, schema=KEY_COLUMNS), quarantined)


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
