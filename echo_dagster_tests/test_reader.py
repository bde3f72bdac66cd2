import gzip
import io
import json

import pytest

from echo_dagster.ingest.reader import Block, Quarantined, iter_blocks, preview_text, validate_block
from echo_dagster_tests.test_events import COMMON, VALID, DocumentClosed

GOOD = json.dumps({**COMMON, **VALID[DocumentClosed]}).encode()


def records(data: bytes, compressed=False, max_line_bytes=10_000, preview_bytes=64, block_bytes=4096):
    """(line number, event id or quarantine reason) for every line, as ingestion sees them."""
    out = []
    for item in iter_blocks(io.BytesIO(data), compressed=compressed, block_bytes=block_bytes,
                            max_line_bytes=max_line_bytes, preview_bytes=preview_bytes):
        if isinstance(item, Quarantined):
            out.append((item.line_no, item.reason, item))
            continue
        result = validate_block(item, max_line_bytes=max_line_bytes, preview_bytes=preview_bytes)
        events = result.events.to_pylist() if result.events is not None else []
        found = [(e["source_line"], e["event_id"], e) for e in events] + [(q.line_no, q.reason, q)
                                                                         for q in result.quarantined]
        assert len(found) == result.lines
        out += sorted(found, key=lambda x: x[0])
    return out


@pytest.mark.parametrize("block_bytes", [1, 100, 4096])
def test_every_line_gives_exactly_one_record_with_its_number(block_bytes):
    data = GOOD + b"\n" + b"oops\n" + GOOD + b"\r\n" + GOOD  # CRLF and no final newline are fine
    out = records(data, block_bytes=block_bytes)
    assert [(n, what) for n, what, _ in out] == [(1, "e1"), (2, "bad_json"), (3, "e1"), (4, "e1")]


@pytest.mark.parametrize("block_bytes", [16, 700, 100_000])
def test_a_line_over_the_limit_is_quarantined_without_losing_the_next_one(block_bytes):
    long = json.dumps({**COMMON, **VALID[DocumentClosed], "pad": "x" * 5_000}).encode()
    out = records(GOOD + b"\n" + long + b"\n" + GOOD + b"\n", max_line_bytes=1000, preview_bytes=16,
                  block_bytes=block_bytes)
    assert [(n, what) for n, what, _ in out] == [(1, "e1"), (2, "line_too_long"), (3, "e1")]
    bad = out[1][2]
    assert f"line of {len(long) + 1} bytes exceeds the limit of 1000 bytes" == bad.detail
    assert bad.raw == long[:16]


def test_the_last_line_may_be_over_the_limit_and_unterminated():
    out = records(GOOD + b"\n" + b"y" * 3000, max_line_bytes=1000, block_bytes=64)
    assert [(n, what) for n, what, _ in out] == [(1, "e1"), (2, "line_too_long")]
    assert "line of 3000 bytes" in out[1][2].detail


@pytest.mark.parametrize("block_bytes", [64, 1 << 20])
def test_a_cut_off_gzip_stream_keeps_the_lines_before_the_cut(block_bytes):
    data = gzip.compress((GOOD + b"\n") * 300 + b"x" * 100, mtime=0)
    out = records(data[: len(data) - 10], compressed=True, block_bytes=block_bytes)
    assert out[-1][1] == "gzip_truncated" and out[-1][0] == len(out)
    assert all(what == "e1" for _, what, _ in out[:-1])
    assert len(out) > 250  # nearly everything before the cut survives


def test_a_file_that_is_not_gzip_is_quarantined_as_corrupt():
    out = records(b"plain text, not gzip\n", compressed=True)
    assert [(n, what) for n, what, _ in out] == [(1, "gzip_corrupt")]


def test_blocks_hold_whole_lines():
    data = b"".join(GOOD + b"\n" for _ in range(50))
    blocks = list(iter_blocks(io.BytesIO(data), compressed=False, block_bytes=700, max_line_bytes=10_000,
                              preview_bytes=8))
    assert all(isinstance(b, Block) and b.data.endswith(b"\n") for b in blocks) and len(blocks) > 5
    assert [b.first_line for b in blocks] == [1 + sum(x.data.count(b"\n") for x in blocks[:i]) for i in range(len(blocks))]


def test_previews_are_text_where_possible_and_base64_elsewhere():
    assert preview_text("héllo".encode()) == ("héllo", "utf-8")
    assert preview_text("héllo".encode()[:2]) == ("h", "utf-8")  # cut inside a character
    assert preview_text(b"\xff\xfeabc")[1] == "base64"
    assert preview_text(b"a\x00b")[1] == "base64"
