"""Stage one landing file: validate it block by block into Parquet files in a spill folder.

For a big day this runs in worker processes, one file a task, so that validation uses every core
and no event crosses a process boundary: DuckDB reads the Parquet files afterwards, streaming.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from echo_dagster.ingest.reader import Quarantined, iter_blocks, preview_text, validate_block
from echo_dagster.landing import LandingFile, LandingStore

QUARANTINE_SCHEMA = pa.schema([
    ("file_no", pa.int32()),
    ("line_no", pa.int64()),
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("raw", pa.string()),
    ("raw_encoding", pa.string()),
])


@dataclass(frozen=True)
class StagedFile:
    file_no: int
    lines: int
    events: int
    events_path: Path | None  # Parquet: reader.KEY_COLUMNS + file_no, or only tenant_id and session_id
    quarantine_path: Path | None  # Parquet: QUARANTINE_SCHEMA


def stage_file(
    store: LandingStore,
    file: LandingFile,
    file_no: int,
    out_dir: Path,
    *,
    block_bytes: int,
    max_line_bytes: int,
    preview_bytes: int,
    sessions_only: bool = False,
) -> StagedFile:
    events = _Sink(out_dir / f"events-{file_no:06d}.parquet")
    quarantine = _Sink(out_dir / f"quarantine-{file_no:06d}.parquet")
    lines = valid = 0
    if file.problem:  # never opened: it would block, leave the landing zone, or could not be named
        lines = 1
        quarantine.write(_quarantine_table(file_no, [
            Quarantined(0, file.problem, f"{file.label}: {file.problem.replace('_', ' ')}; not read", b"")]))
    elif not file.holds_events:
        lines = 1
        quarantine.write(_quarantine_table(file_no, [
            Quarantined(0, "unsupported_file", f"not a .jsonl or .jsonl.gz file ({file.size} bytes)", b"")]))
    else:
        with store.open(file) as stream:
            for item in iter_blocks(stream, compressed=file.compressed, block_bytes=block_bytes,
                                    max_line_bytes=max_line_bytes, preview_bytes=preview_bytes):
                if isinstance(item, Quarantined):
                    lines += 1
                    quarantine.write(_quarantine_table(file_no, [item]))
                    continue
                result = validate_block(item, max_line_bytes=max_line_bytes, preview_bytes=preview_bytes)
                lines += result.lines
                if result.quarantined:
                    quarantine.write(_quarantine_table(file_no, result.quarantined))
                if result.events is not None:
                    table = result.events
                    valid += len(table)
                    if sessions_only:
                        table = table.select(["tenant_id", "session_id"])
                    else:
                        table = table.append_column("file_no", pa.repeat(pa.scalar(file_no, pa.int32()), len(table)))
                    events.write(table)
    return StagedFile(file_no, lines, valid, events.close(), quarantine.close())


def _quarantine_table(file_no: int, records: list[Quarantined]) -> pa.Table:
    previews = [preview_text(q.raw) for q in records]
    return pa.Table.from_arrays(
        [
            pa.repeat(pa.scalar(file_no, pa.int32()), len(records)),
            pa.array([q.line_no for q in records], pa.int64()),
            pa.array([q.reason for q in records], pa.string()),
            pa.array([q.detail for q in records], pa.string()),
            pa.array([text for text, _ in previews], pa.string()),
            pa.array([encoding for _, encoding in previews], pa.string()),
        ],
        schema=QUARANTINE_SCHEMA,
    )


class _Sink:
    """A Parquet file opened on its first rows; uncompressed, since it lives for one run."""

    def __init__(self, path: Path):
        self.path = path
        self.writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema, compression="none", use_dictionary=False)
        self.writer.write_table(table)

    def close(self) -> Path | None:
        if self.writer is None:
            return None
        self.writer.close()
        return self.path
