import gzip
import io
import json

from echo_dagster.ingest.reader import Quarantined, preview_text, read_records
from echo_dagster_tests.test_events import COMMON, VALID, DocumentClosed

GOOD = json.dumps({**COMMON, **VALID[DocumentClosed]}).encode()


def records(data: bytes, compressed=False, max_line_bytes=10_000, preview_bytes=64):
    return list(read_records(io.BytesIO(data), compressed=compressed, max_line_bytes=max_line_bytes,
                             preview_bytes=preview_bytes))


def test_every_line_gives_exactly_one_record_with_its_number():
    out = records(GOOD + b"\n" + b"oops\n" + GOOD + b"\r\n" + GOOD)  # CRLF and no final newline are fine
    assert [n for n, _ in out] == [1, 2, 3, 4]
    assert [type(r).__name__ for _, r in out] == ["DocumentClosed", "Quarantined", "DocumentClosed", "DocumentClosed"]


def test_a_line_over_the_limit_is_quarantined_and_skipped_without_losing_the_next_one():
    long = json.dumps({**COMMON, **VALID[DocumentClosed], "pad": "x" * 50_000}).encode()
    out = records(long + b"\n" + GOOD + b"\n", max_line_bytes=1000, preview_bytes=16)
    assert isinstance(out[0][1], Quarantined) and out[0][1].reason == "line_too_long"
    assert f"line of {len(long) + 1} bytes" in out[0][1].detail
    assert out[0][1].raw == long[:16]
    assert out[1][0] == 2 and out[1][1].event_id == "e1"


def test_a_cut_off_gzip_member_keeps_the_lines_before_it_and_quarantines_the_cut():
    data = gzip.compress((GOOD + b"\n") * 3 + b"x" * 100)
    out = records(data[:-10], compressed=True)
    assert [type(r).__name__ for _, r in out][:3] == ["DocumentClosed"] * 3
    assert out[-1][1].reason == "gzip_truncated" and out[-1][0] == len(out)


def test_a_file_that_is_not_gzip_is_quarantined_as_corrupt():
    out = records(b"plain text, not gzip\n", compressed=True)
    assert [(n, r.reason) for n, r in out] == [(1, "gzip_corrupt")]


def test_previews_are_text_where_possible_and_base64_elsewhere():
    assert preview_text("héllo".encode()) == ("héllo", "utf-8")
    assert preview_text("héllo".encode()[:2]) == ("h", "utf-8")  # cut inside a character
    assert preview_text(b"\xff\xfeabc")[1] == "base64"
    assert preview_text(b"a\x00b")[1] == "base64"
