"""The judge's data: no training example equal or near to an eval target of any tenant, whatever
order the partitions were filtered in; the eval set holds one row of each (file, prefix tail,
target). Real DuckDB files, rows as the filters write them."""

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from echo_dagster import warehouse
from echo_dagster.evaluation.offline import held_out_rows
from echo_dagster.filters.pipeline import dedup_key
from echo_dagster.training import window

DAY = date(2026, 11, 2)
AREA = "return math.pi * r ** 2\n"
PREFIX = "import math\n\n\ndef area(r):\n    "


def add(con, day: date, cid: str, split: str, target: str, tenant: str = "t-a", path: str = "geo.py",
        prefix: str = PREFIX) -> None:
    """A kept row of filtered_dataset, its dedup key as the filters make it."""
    place = ("repo", path) if split == "eval" else None
    con.execute("INSERT INTO filtered_dataset (partition_date, completion_id, session_id, tenant_id, repo, path, "
                "language, prefix, suffix, target, split, dedup_key) VALUES ($d, $c, $c, $t, 'repo', $p, 'python', "
                "$prefix, '\n', $target, $s, $k)",
                {"d": day, "c": cid, "t": tenant, "p": path, "prefix": prefix, "target": target, "s": split,
                 "k": dedup_key(tenant, prefix, target, 200, place)})


def others(con, day: date, count: int) -> None:
    for n in range(count):
        add(con, day, f"other-{day}-{n}", "train", f"return {n} * r * r + {n}\n", path=f"o{n}.py",
            prefix=f"def f_{n}(r):\n    ")


def test_a_training_row_filtered_before_the_eval_row_it_equals_is_left_out_at_training_time(tmp_path):
    """Train first: day 1's training row was kept (no eval row existed yet); day 2 brings an eval row
    with the same target, and a near one (comment aside). Training leaves both training rows out."""
    db = tmp_path / "wh.duckdb"
    with warehouse.connect(db) as con:
        add(con, DAY, "train-same", "train", AREA)
        add(con, DAY, "train-near", "train", "return math.pi * r ** 2  # the area\n", path="geo2.py")
        others(con, DAY, 5)
        add(con, date(2026, 11, 3), "eval-1", "eval", "    " + AREA, path="held.py")
        data = window.load(con, window.Window())
    assert {e["completion_id"] for e in data.examples} == {f"other-{DAY}-{n}" for n in range(5)}
    assert data.decontaminated == 2


def test_another_tenants_eval_target_decontaminates_too(tmp_path):
    db = tmp_path / "wh.duckdb"
    with warehouse.connect(db) as con:
        add(con, DAY, "a-train", "train", AREA, tenant="t-a")
        others(con, DAY, 3)
        add(con, DAY, "b-eval", "eval", AREA, tenant="t-b", path="held.py")
        only_a = window.load(con, window.Window(), ("tenant_id = $t", {"t": "t-a"}))
    assert "a-train" not in {e["completion_id"] for e in only_a.examples} and only_a.decontaminated == 1
    assert len(only_a.examples) == 3


def test_a_preference_pair_whose_rejected_text_is_an_eval_target_is_left_out(tmp_path):
    """A pair trains on its rejected text as much as on its target (away from it): neither may be an
    eval target."""
    import duckdb

    from echo_dagster.filters.decontaminate import decontaminate, eval_targets

    con = duckdb.connect()
    con.execute("CREATE TABLE eval_set (target VARCHAR, language VARCHAR)")
    con.execute("INSERT INTO eval_set VALUES (?, 'python')", [AREA])
    pairs = [{"target": "return 2 * math.pi * r\n", "rejected": "    " + AREA, "language": "python"},
             {"target": "return 2 * math.pi * r\n", "rejected": "return r\n", "language": "python"}]
    kept, removed = decontaminate(pairs, eval_targets(con))
    assert kept == pairs[1:] and removed == 1


def test_a_cap_keeps_as_many_examples_as_it_says_after_decontamination(tmp_path):
    db = tmp_path / "wh.duckdb"
    with warehouse.connect(db) as con:
        add(con, DAY, "train-same", "train", AREA)
        others(con, DAY, 6)
        add(con, DAY, "eval-1", "eval", AREA, path="held.py")
        assert len(window.load(con, window.Window(max_examples=6)).examples) == 6


def test_the_eval_set_holds_one_row_of_each_file_prefix_and_target_whatever_the_order(tmp_path):
    """A developer who asks twice at one place gives one test; the same code in another file, or at
    another place, is another. The first row by day is kept even when its day came in later."""
    db = tmp_path / "wh.duckdb"
    with warehouse.connect(db) as con:
        add(con, date(2026, 11, 4), "late", "eval", AREA, path="held.py")  # a later day, filtered first
        add(con, date(2026, 11, 3), "early", "eval", AREA, path="held.py")
        add(con, date(2026, 11, 3), "other-file", "eval", AREA, path="held2.py")
        add(con, date(2026, 11, 3), "other-place", "eval", AREA, path="held.py", prefix="def disc(r):\n    ")
        add(con, date(2026, 11, 3), "other-tenant", "eval", AREA, tenant="t-b", path="held.py")
        in_view = {r[0] for r in con.execute("SELECT completion_id FROM eval_set").fetchall()}
        pooled = {r["completion_id"] for r in held_out_rows(con, 100)}
        tenant_b = {r["completion_id"] for r in held_out_rows(con, 100, tenants=("tenant_id = $t", {"t": "t-b"}))}
    # The view keeps a row per tenant (no tenant's events suppress another's); evaluated together,
    # the same place and target of two tenants is one completion.
    assert in_view == {"early", "other-file", "other-place", "other-tenant"}
    assert {"other-file", "other-place"} < pooled and len(pooled & {"early", "other-tenant"}) == 1 and len(pooled) == 3
    assert tenant_b == {"other-tenant"}


def test_an_evaluation_knows_every_target_its_checkpoints_and_the_champions_they_started_from_learned(tmp_path):
    """Rows added to the eval set after a champion was trained may hold its training targets: its
    digests (and its ancestors') are in the registry, for the evaluation to leave those rows out."""
    import json

    from echo_dagster.filters.decontaminate import target_digest
    from echo_dagster.training.publish import trained_on
    from echo_dagster.training.registry import Registry

    registry = Registry(tmp_path / "registry")
    for name, started_from, targets in (("echo-1", "smollm2-135m", [AREA]), ("echo-2", "echo-1", ["x = 1\n"]),
                                        ("echo-3", None, ["unrelated()\n"])):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "echo_meta.json").write_text(json.dumps({"name": name, "champion_at_start": started_from,
                                                           "targets": [target_digest(t) for t in targets]}))
        registry.publish(folder, name)
    seen = trained_on(registry, ["echo-2", None, "smollm2-135m"])
    # White space aside, the same target; echo-3 was not measured.
    assert target_digest("return  math.pi * r ** 2") in seen and target_digest("x = 1") in seen
    assert target_digest("unrelated()\n") not in seen and len(seen) == 2


@settings(max_examples=150, deadline=None)
@given(evals=st.lists(st.lists(st.integers(0, 6), min_size=8, max_size=30), min_size=1, max_size=12),
       pick=st.integers(0, 11), cut=st.integers(0, 2), extra=st.lists(st.integers(0, 6), max_size=2),
       edits=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 6)), max_size=2))
def test_near_means_the_shingles_jaccard_itself_not_an_estimate(evals, pick, cut, extra, edits):
    """Decontamination's near is exact: it flags a target exactly when some eval target's shingles
    have Jaccard ≥ the threshold with its own (the MinHash estimate missed 5 such pairs). The
    target is an eval target with its end cut or extended and a few tokens changed: near it, or just
    past the threshold; a small alphabet, so that shingles are shared and their frequencies (the
    prefixes' order) differ."""
    import duckdb

    from echo_dagster.filters.decontaminate import eval_targets
    from echo_dagster.filters.pipeline import FilterSettings, normalized, shingles

    texts = [" ".join(f"t{n}" for n in tokens) for tokens in evals]
    tokens = list(evals[pick % len(evals)])
    tokens = tokens[: max(1, len(tokens) - cut)] + extra
    for where, token in edits:
        tokens[where % len(tokens)] = token
    target, threshold = " ".join(f"t{n}" for n in tokens), FilterSettings().near_duplicate_jaccard
    con = duckdb.connect()
    con.execute("CREATE TABLE eval_set (target VARCHAR, language VARCHAR)")
    con.executemany("INSERT INTO eval_set VALUES (?, 'python')", [[t] for t in texts])
    mine = shingles(target, "python")
    brute = any(normalized(target) == normalized(t) or
                len(mine & (other := shingles(t, "python"))) / len(mine | other) >= threshold - 1e-9 for t in texts)
    assert eval_targets(con).overlaps(target, "python") == brute
