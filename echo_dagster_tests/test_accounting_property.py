"""Property: whatever the landing files hold, every line is accounted for."""

import gzip
import json
from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echo_dagster import warehouse
from echo_dagster.ingest.raw_sessions import IngestSettings, check_accounting, ingest_partition
from echo_dagster.landing import LocalLandingStore
from echo_dagster_tests.test_events import COMMON, VALID

DAY = date(2026, 11, 1)


@st.composite
def valid_lines(draw) -> bytes:
    fields = dict(draw(st.sampled_from(list(VALID.values()))))
    fields["event_id"] = f"e{draw(st.integers(0, 60))}"  # a small id space makes duplicates
    fields["session_id"] = f"s{draw(st.integers(0, 5))}"
    return json.dumps({**COMMON, **fields}).encode()


@st.composite
def corrupted_lines(draw) -> bytes:
    line = bytearray(draw(valid_lines()))
    how = draw(st.sampled_from(["truncate", "flip", "insert", "retype"]))
    at = draw(st.integers(0, len(line) - 1))
    if how == "truncate":
        del line[at:]
    elif how == "flip":
        line[at] = draw(st.integers(0, 255))
    elif how == "insert":
        line[at:at] = draw(st.binary(min_size=1, max_size=8))
    else:
        obj = json.loads(bytes(line))
        obj[draw(st.sampled_from(sorted(obj)))] = draw(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)))
        line = bytearray(json.dumps(obj).encode())
    return bytes(line).replace(b"\n", b"")


junk = st.binary(max_size=120).map(lambda b: b.replace(b"\n", b""))
json_junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
).map(lambda v: json.dumps(v).encode())
any_line = st.one_of(valid_lines(), corrupted_lines(), junk, json_junk)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(files=st.lists(st.tuples(st.lists(any_line, min_size=50, max_size=200), st.booleans()), min_size=1, max_size=3),
       cut_gzip=st.booleans())
def test_lines_read_equal_kept_plus_duplicates_plus_quarantined(tmp_path_factory, files, cut_gzip):
    root = tmp_path_factory.mktemp("prop")
    store = LocalLandingStore(root / "landing")
    written = 0
    for i, (lines, compressed) in enumerate(files):
        body = b"\n".join(lines) + b"\n"
        if compressed:
            data = gzip.compress(body, mtime=0)
            if cut_gzip and i == 0:
                data = data[: len(data) // 2]
            store.write(f"{DAY}/f{i}.jsonl.gz", data)
        else:
            store.write(f"{DAY}/f{i}.jsonl", body)
        written += len(lines)
    db = root / "wh.duckdb"
    result = ingest_partition(store, DAY, db, IngestSettings(max_line_bytes=400))
    assert result.lines_read + result.late_adopted == (
        result.kept + result.duplicates + result.quarantined + result.deferred_to_previous + result.opted_out
    )
    if not (cut_gzip and files[0][1]):
        assert result.lines_read == written
    with warehouse.connect(db, read_only=True) as con:
        check = check_accounting(con, DAY)
        assert check.passed, check.description
        # Event ids are unique within a tenant (two tenants may use the same one).
        assert con.execute("SELECT count(DISTINCT (tenant_id, event_id)) = count(*) FROM raw_sessions").fetchone()[0]
