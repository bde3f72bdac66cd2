"""refined_targets: final-state alignment and trimming, on hand-made sessions and simulator logs."""

import random
from datetime import date, datetime, timedelta

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from echo_dagster import warehouse
from echo_dagster.defs.raw_sessions_asset import raw_sessions
from echo_dagster.defs.refined_targets_asset import refined_targets
from echo_dagster.defs.resources import LandingZone, OptOutList, Warehouse
from echo_dagster.harvest.align import Diff
from echo_dagster.harvest.refine import REASONS, refine_session, split_document
from echo_dagster.landing import LocalLandingStore
from echo_dagster.simulate.run import SimulationSpec, simulate
from echo_dagster_tests.test_simulate import SOURCE, half_right

T0 = datetime(2026, 11, 1, 10, 0, 0)
PREFIX = "import math\n\n\ndef area(r):\n    "
SUFFIX = "\n\nprint(area(2))\n"


def ev(kind: str, second: int, **fields) -> dict:
    base = {"event": kind, "ts": T0 + timedelta(seconds=second), "session_id": "S", "user_id": "u", "tenant_id": "t",
            "repo": "r", "path": "geo.py", "language": "python", "model": "m", "completion_id": None,
            "prefix": None, "suffix": None, "proposal": None, "accepted_text": None, "document": None,
            "trigger": None}
    return base | fields


def shown(proposal: str, prefix: str = PREFIX, suffix: str = SUFFIX) -> dict:
    return ev("completion_shown", 0, completion_id="c", prefix=prefix, suffix=suffix, proposal=proposal)


def snap(second: int, document: str, trigger: str = "interval") -> dict:
    return ev("document_snapshot", second, document=document, trigger=trigger)


def session(proposal: str, decision: str | None, *documents: str, accepted_text: str | None = None,
            closed: bool = True, prefix: str = PREFIX) -> dict:
    events = [shown(proposal, prefix)]
    if decision == "accepted":
        events.append(ev("completion_accepted", 2, completion_id="c", accepted_text=accepted_text or proposal))
    elif decision == "rejected":
        events.append(ev("completion_rejected", 2, completion_id="c"))
    for n, document in enumerate(documents):
        events.append(snap(30 * (n + 1), document, "save" if closed and n == len(documents) - 1 else "interval"))
    if closed:
        events.append(ev("document_closed", 30 * len(documents) + 5))
    (row,) = refine_session(events)
    return row


def final(body: str) -> str:
    return PREFIX + body + SUFFIX


@pytest.mark.parametrize("proposal, decision, body, accepted_text, kind, target", [
    ("return math.pi * r ** 2\n", "accepted", "return math.pi * r ** 2\n", None, "accepted_unchanged",
     "return math.pi * r ** 2\n"),
    ("return math.pi * r * 2\n", "accepted", "return math.pi * r ** 2\n", None, "accepted_edited",
     "return math.pi * r ** 2\n"),
    ("r2 = r * r\n    return math.pi * r2\n", "accepted", "r2 = r ** 2\n    return math.pi * r2\n", "r2 = r * r\n",
     "partially_accepted", "r2 = r ** 2\n    return math.pi * r2\n"),
    ("pass\n", "rejected", "return math.pi * r ** 2\n", None, "rejected_rewritten", "return math.pi * r ** 2\n"),
])
def test_each_source_kind(proposal, decision, body, accepted_text, kind, target):
    row = session(proposal, decision, final(body), accepted_text=accepted_text)
    assert (row["source_kind"], row["target"], row["reason"]) == (kind, target, None)
    assert split_document(row) == (PREFIX, SUFFIX)
    assert 0.0 <= row["es"] <= 1.0


def test_the_target_is_what_stands_at_the_cursor_after_edits_elsewhere_and_more_typing():
    typed = final("return math.pi * r ** 2\n\n\ndef perimeter(r):\n    return 2 * math.pi * r\n")
    later = "# geometry helpers\n" + typed.replace("import math", "import math  # stdlib")
    row = session("return math.pi * r * r\n", "accepted", final("return math.pi * r * r\n"), typed, later)
    assert row["target"] == "return math.pi * r ** 2\n" and row["source_kind"] == "accepted_edited"
    prefix, suffix = split_document(row)
    assert prefix.startswith("# geometry helpers\n") and suffix.startswith("\n\ndef perimeter")
    assert row["survived"] == pytest.approx(22 / 23)  # all but one "r" of the accepted text stands


def test_the_target_is_the_block_rule_capped_whatever_proposal_was_shown():
    """The truth does not depend on the model that served it: a one-line proposal and a five-line
    one are judged against the same target, the block the user wrote, at most MAX_LINES lines."""
    from echo_dagster.completion import MAX_LINES

    body = "r2 = r * r\n    half = r2 / 2\n    return math.pi * r2, half\n"
    proposals = ("pass\n", "r2 = r * r\n", "a = 1\n    b = 2\n    c = 3\n    d = 4\n    e = 5\n")
    assert {session(p, "rejected", final(body))["target"] for p in proposals} == {body}
    longer = "".join(f"v{n} = r * {n}\n    " for n in range(6)) + "return v5\n"
    (target,) = {session(p, "rejected", final(longer))["target"] for p in proposals}
    assert target.count("\n") == MAX_LINES and longer.startswith(target)


@pytest.mark.parametrize("reason, kwargs", [
    ("no_decision", dict(proposal="x\n", decision=None)),
    ("no_final_snapshot", dict(proposal="x\n", decision="rejected")),
    ("session_abandoned", dict(proposal="x\n", decision="rejected", documents=(final("return 1\n"),), closed=False)),
    ("document_replaced", dict(proposal="x\n", decision="rejected", documents=("entirely different\n" * 20,))),
    ("region_deleted", dict(proposal="x\n", decision="rejected", documents=(PREFIX + SUFFIX,))),
    # mid-line: the user ended the line there and went on below
    ("empty_target", dict(proposal="2)", decision="rejected", prefix="value = max(1,",
                          documents=("value = max(1, \n    2)" + SUFFIX,))),
])
def test_every_reason_code(reason, kwargs):
    documents = kwargs.pop("documents", ())
    prefix = kwargs.pop("prefix", PREFIX)
    row = session(kwargs["proposal"], kwargs["decision"], *documents, closed=kwargs.get("closed", True),
                  prefix=prefix)
    assert row["reason"] == reason and row["target"] is None


def test_the_target_starts_where_its_text_does_so_prefix_target_and_suffix_are_the_document():
    """Asked with the cursor inside the indentation, the block rule leaves the rest of it out of the
    target: the target's start moves past it, and no suffix repeats the truth's end."""
    asked_at = "import math\n\n\ndef area(r):\n  "
    document = asked_at + "  return math.pi * r ** 2\n" + SUFFIX
    events = [shown("pass\n", asked_at), ev("completion_rejected", 2, completion_id="c"), snap(30, document, "save"),
              ev("document_closed", 35)]
    (row,) = refine_session(events)
    prefix, suffix = split_document(row)
    assert row["target"] == "return math.pi * r ** 2\n" and prefix + row["target"] + suffix == document
    assert prefix == asked_at + "  " and suffix == SUFFIX


def test_a_target_the_rule_changed_inside_is_not_taken_for_the_documents_text():
    row = session("pass\n", "rejected", PREFIX + "x = 1   \n    return x\n" + SUFFIX)
    assert row["reason"] == "target_not_in_document" and row["target"] is None


def test_positions_follow_insertions_with_the_gravity_asked_for():
    diff = Diff("abcXYZ", "abc123XYZ")
    assert (diff.map(3, right=False), diff.map(3, right=True)) == (3, 6)
    diff = Diff("abcdef", "abQQef")
    assert (diff.map(3, right=False), diff.map(3, right=True)) == (2, 4)
    assert Diff("x = 1\n", "# c\nx = 1\n").map(4, right=False) == 8


def test_refined_targets_account_for_every_completion_of_the_simulators_logs(tmp_path):
    spec = SimulationSpec(source=SOURCE, start=date(2026, 11, 2), days=1, users=3, sessions_per_user_day=2, seed=3)
    summary = simulate(spec, LocalLandingStore(tmp_path / "landing"), LocalLandingStore(tmp_path / "truth"),
                       half_right, "test")
    resources = {"landing": LandingZone(url=str(tmp_path / "landing"), s3=S3Resource()),
                 "warehouse": Warehouse(path=str(tmp_path / "wh.duckdb")),
                 "opt_out": OptOutList(path=str(tmp_path / "opt_out.txt"))}
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(2):  # a second run replaces the partition
        result = dg.materialize([raw_sessions, refined_targets], partition_key="2026-11-02", resources=resources,
                                instance=instance)
        assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    with warehouse.connect(tmp_path / "wh.duckdb", read_only=True) as con:
        rows, with_target, kinds = con.execute(
            "SELECT count(*), count(target), count(DISTINCT source_kind) FROM refined_targets").fetchone()
        examples = con.execute("SELECT count(*), count(prefix), count(DISTINCT session_id), "
                               "(SELECT count(*) FROM final_documents) FROM refined_examples").fetchone()
        reasons = dict(con.execute("SELECT reason, count(*) FROM refined_targets WHERE reason IS NOT NULL "
                                   "GROUP BY ALL").fetchall())
        unaccounted = con.execute(
            "SELECT count(*) FROM refined_targets WHERE (target IS NULL) = (reason IS NULL)").fetchone()[0]
    assert rows == summary.completions and unaccounted == 0
    # Each final document stored once, prefix' and suffix' read back through the view.
    assert examples[:2] == (rows, with_target) and 0 < examples[3] <= examples[2]
    assert with_target > rows / 2 and kinds >= 2, reasons  # the corpus is this repository: it changes
    assert set(reasons) <= set(REASONS)


def test_a_huge_rewrite_around_the_cursor_ends_as_a_reason_in_bounded_time():
    import time

    head, tail = "a = 0\n" * 100_000, "b = 0\n" * 50_000  # a document of about 1 MB
    prefix = head + "x = 1\n" * 6_000
    suffix = "x = 1\n" * 6_000 + tail
    rewritten = head + "z = 3\n" * 6_000 + "w = 4\n" + "z = 3\n" * 6_000 + tail  # 144k characters changed
    events = [ev("completion_shown", 0, completion_id="c", prefix=prefix, suffix=suffix, proposal="w = 4\n"),
              ev("completion_rejected", 2, completion_id="c"), snap(30, rewritten, "save"), ev("document_closed", 40)]
    start = time.monotonic()
    (row,) = refine_session(events)
    assert row["reason"] == "alignment_too_costly" and time.monotonic() - start < 5


def test_thousands_of_snapshots_end_as_targets_in_bounded_time():
    import time

    body = "total = sum(values)\n"
    head = "".join(f"def helper_{n}(x):\n    return x * {n}\n\n\n" for n in range(600)) + PREFIX  # ~20 KB
    events = []
    for c in range(100):  # a completion shown every 30 snapshots, rejected, the user types on
        events += [ev("completion_shown", c * 30, completion_id=f"c{c}", prefix=head, suffix=SUFFIX,
                      proposal="pass\n"), ev("completion_rejected", c * 30 + 1, completion_id=f"c{c}")]
    for n in range(3_000):  # one character a second, a snapshot each
        events.append(snap(n + 2, head + body[: n % len(body) + 1] + SUFFIX, "interval"))
    events += [snap(3_010, head + body + SUFFIX, "save"), ev("document_closed", 3_011)]
    events.sort(key=lambda e: e["ts"])
    start = time.monotonic()
    rows = refine_session(events)
    assert len(rows) == 100 and {r["target"].rstrip() for r in rows} == {body.rstrip()}
    assert time.monotonic() - start < 60  # linear in snapshots × completions: a few seconds here


def test_binary_content_ends_as_rows_not_a_crash():
    junk = bytes(random.Random(4).randrange(256) for _ in range(20_000)).decode("latin-1")
    for document in (PREFIX + junk + SUFFIX, junk):
        row = session("return 1\n", "rejected", document)
        assert row["reason"] is not None or row["target"]


def test_a_session_beyond_the_memory_bound_ends_as_a_reason(tmp_path):
    from echo_dagster.harvest.partition import refine_partition
    from echo_dagster.harvest.refine import RefineSettings
    from echo_dagster.ingest.raw_sessions import ingest_partition

    spec = SimulationSpec(source=SOURCE, start=date(2026, 11, 2), days=1, users=2, sessions_per_user_day=1, seed=5)
    landing = LocalLandingStore(tmp_path / "landing")
    summary = simulate(spec, landing, LocalLandingStore(tmp_path / "truth"), half_right, "test")
    ingest_partition(landing, date(2026, 11, 2), tmp_path / "wh.duckdb")
    with warehouse.connect(tmp_path / "wh.duckdb") as con:
        result = refine_partition(con, date(2026, 11, 2), RefineSettings(max_session_bytes=10_000))
    assert result.completions == summary.completions and result.with_target == 0
    assert result.by_reason == {"session_too_large": summary.completions}


PASTED = "".join(f"    value_{n} = compute_{n}(r, scale={n})\n" for n in range(20))[4:]  # ~780 characters
# A file long enough that 780 new characters are an edit, not a new document.
LONG_PREFIX = "".join(f"def helper_{n}(x):\n    return x * {n} + math.sqrt(x)\n\n\n" for n in range(60)) + PREFIX


def long_final(body: str) -> str:
    return LONG_PREFIX + body + SUFFIX


@pytest.mark.parametrize("bodies, decision, pasted", [
    # Typed at a human pace: 23 characters in 30 s, then nothing new.
    (["return math.pi * r ** 2\n"], "rejected", False),
    # An accepted proposal appears at once: not a paste.
    ([PASTED[:400]], "accepted", False),
    # 780 characters 30 s after the decision: more than anyone types.
    ([PASTED + "    return value_0\n"], "rejected", True),
    # The same text over three minutes: typed.
    ([PASTED[: 130 * (n + 1)] for n in range(6)] + [PASTED + "    return value_0\n"], "rejected", False),
])
def test_text_that_grew_faster_than_typing_is_marked_pasted(bodies, decision, pasted):
    proposal = PASTED[:400] if decision == "accepted" else "pass\n"
    row = session(proposal, decision, *map(long_final, bodies), prefix=LONG_PREFIX)
    assert row["reason"] is None
    assert (row["pasted_share"] > 0.5) == pasted, row["pasted_share"]
