"""The experience simulator against real code, the real event schema and real ingestion."""

import gzip
import importlib.util
import json
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

import pytest

from echo_dagster.corpus import scan_source
from echo_dagster.events import parse_event
from echo_dagster.ingest.raw_sessions import ingest_partition
from echo_dagster.landing import LocalLandingStore
from echo_dagster.metrics import edit_similarity, exact_match, first_lines, simulated_accept
from echo_dagster.simulate import oracle
from echo_dagster.simulate.run import SimulationSpec, simulate
from echo_dagster.simulate.sessions import NoiseConfig

# A fixed installed package, not this repository: the corpus must not change with every commit.
SOURCE = str(Path(importlib.util.find_spec("dagster_shared").origin).parent)
START = date(2026, 11, 2)


def run(tmp_path, propose, **overrides):
    spec = SimulationSpec(source=SOURCE, start=START, days=2, users=3, sessions_per_user_day=2, seed=7, **overrides)
    landing, truth = LocalLandingStore(tmp_path / "landing"), LocalLandingStore(tmp_path / "landing-truth")
    return simulate(spec, landing, truth, propose, "test-model"), landing


def landed(root):
    for path in sorted((root / "landing").rglob("*.jsonl.gz")):
        for line in gzip.decompress(path.read_bytes()).splitlines():
            yield path, line


def truth_rows(root, kind):
    return [row for path in sorted((root / "landing-truth").rglob("sim-*.jsonl"))
            for row in map(json.loads, path.read_text().splitlines()) if row["type"] == kind]


def half_right(requests):
    """The oracle proposer over the test corpus (see simulate/oracle.py)."""
    return oracle.half_right([f.text for f in scan_source(SOURCE).files])(requests)


def test_the_acceptance_rule_on_hand_made_cases():
    assert simulated_accept("return a + b", "return a + b\nprint(1)\n")
    assert simulated_accept("return a+b", "return a + b\n")  # ES 0.83 >= 0.8
    assert not simulated_accept("print(value)", "return a + b\n")
    assert not simulated_accept("", "")  # an empty proposal is never accepted
    assert simulated_accept("x = 1\ny = 2\n", "x = 1\ny = 2\nz = 3\n")  # k = 2 lines compared
    assert not simulated_accept("x = 1\ny = 2\n", "x = 1\nq = 9\n", tau=0.9)
    assert edit_similarity("", "") == 1.0 and exact_match("a  \nb\n", "a\nb")


def test_the_same_seed_gives_byte_identical_files(tmp_path):
    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    run(tmp_path / "a", half_right)
    run(tmp_path / "b", half_right)
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert a == b and len(a) > 4


def test_every_line_is_a_valid_event_and_ingests_without_quarantine(tmp_path):
    summary, landing = run(tmp_path, half_right)
    events = {e.event_id: e for e in (parse_event(line) for _, line in landed(tmp_path))}  # duplicates once
    kinds = Counter(e.event for e in events.values())
    assert kinds["completion_shown"] == summary.completions > 50
    assert kinds["completion_accepted"] == summary.accepted > 0 and kinds["completion_rejected"] > 0
    assert kinds["document_snapshot"] > kinds["completion_shown"]
    for day in (START, date(2026, 11, 3), date(2026, 11, 4)):
        assert ingest_partition(landing, day, tmp_path / "wh.duckdb").quarantined == 0


def test_decisions_follow_the_rule_and_users_end_up_with_the_true_code(tmp_path):
    summary, _ = run(tmp_path, half_right)
    completions = truth_rows(tmp_path, "completion")
    assert len(completions) == summary.completions
    for row in completions:
        assert row["accepted"] == simulated_accept(row["proposal"], row["truth"], row["tau"])
        if abs(row["es"] - row["tau"]) > 1e-3:  # both are rounded in the record
            assert row["accepted"] == (bool(row["proposal"]) and row["es"] >= row["tau"])  # the recorded why
    assert any(row["partial"] for row in completions)
    assert 0 < summary.acceptance_rate < 1 and 0 < summary.generation_rate <= 1
    saved = defaultdict(str)
    for _, line in landed(tmp_path):
        event = json.loads(line)
        if event["event"] == "document_snapshot" and event["trigger"] == "save":
            saved[event["session_id"]] = event["document"]
    for row in completions:
        if row["session_id"] in saved:
            assert first_lines(row["truth"], 1) in saved[row["session_id"]]


def test_noise_reaches_the_landing_zone_as_configured(tmp_path):
    summary, _ = run(tmp_path, half_right, noise=NoiseConfig(late=0.2, duplicate=0.2, out_of_order=0.2, pii=1.0))
    events = [(path, json.loads(line)) for path, line in landed(tmp_path)]
    copies = Counter(e["event_id"] for _, e in events)
    assert sum(n - 1 for n in copies.values()) == summary.noise["duplicate"] > 0
    assert sum(path.parent.name > e["ts"][:10] for path, e in events) >= summary.noise["late"] > 0
    swapped = sum(p1 == p2 and a["session_id"] == b["session_id"] and a["ts"] > b["ts"]
                  for (p1, a), (p2, b) in zip(events, events[1:]))
    assert swapped > 0 and summary.noise["out_of_order"] > 0
    sessions = truth_rows(tmp_path, "session")
    assert sum(len(row["planted"]) for row in sessions) == summary.sessions
    # An abandoned session may stop before the line its value was planted in.
    planted = [p for row in sessions if not row["abandoned"] for p in row["planted"]]
    documents = "\n".join(e.get("document", "") for _, e in events)
    assert planted and all(p["value"].split('"')[0].strip("# ") in documents for p in planted)


def test_the_split_holds_files_and_users_out_and_sessions_respect_it(tmp_path):
    run(tmp_path, half_right)
    split = json.loads((tmp_path / "landing-truth" / "split-7.json").read_text())
    assert set(split["files"].values()) == {"train", "eval"}
    for row in truth_rows(tmp_path, "session"):
        assert split["files"][row["path"]] == row["split"] == split["users"][row["user_id"]]


def test_bad_sources_are_clear_errors_and_odd_files_are_skipped(tmp_path):
    with pytest.raises(ValueError, match="neither a folder, an installed package"):
        scan_source(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no code"):
        scan_source(str(tmp_path / "empty"))
    code = tmp_path / "code"
    code.mkdir()
    (code / "good.py").write_text("".join(f"x{n} = {n}\n" for n in range(30)))
    (code / "blob.py").write_bytes(b"\x00\x01" * 100)
    (code / "broken.py").write_text("def f(:\n" + "    pass\n" * 30)
    (code / "huge.py").write_text("x = 1\n" * 100_000)
    (code / "README.md").write_text("not code")
    # A minified bundle (lines of hundreds of characters) is skipped; one long line among short ones is not.
    (code / "bundle.js").write_text("".join(f"var a{n}=" + "1+" * 150 + "1;\n" for n in range(30)))
    (code / "table.js").write_text("const t = '" + "x" * 3_000 + "';\n" + "".join(f"let b{n} = {n};\n" for n in range(30)))
    scan = scan_source(str(code))
    assert [f.path for f in scan.files] == ["good.py", "table.js"]
    assert scan.skipped == {"binary": 1, "unparseable": 1, "too_large": 1, "minified": 1}
