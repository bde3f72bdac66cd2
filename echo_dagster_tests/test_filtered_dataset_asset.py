"""filtered_dataset as a real materialization after raw_sessions and refined_targets."""

from datetime import date

import dagster as dg
from dagster_aws.s3 import S3Resource

from echo_dagster import warehouse
from echo_dagster.defs.filtered_dataset_asset import filtered_dataset
from echo_dagster.defs.raw_sessions_asset import raw_sessions
from echo_dagster.defs.refined_targets_asset import refined_targets
from echo_dagster.defs.resources import LandingZone, OptOutList, Warehouse
from echo_dagster.landing import LocalLandingStore
from echo_dagster.simulate.run import SimulationSpec, simulate
from echo_dagster.simulate.sessions import NoiseConfig
from echo_dagster.simulate.users import make_personas
from echo_dagster_tests.test_simulate import SOURCE, half_right


def test_the_harvest_chain_filters_the_simulators_logs(tmp_path):
    spec = SimulationSpec(source=SOURCE, start=date(2026, 11, 2), days=1, users=3, sessions_per_user_day=1, seed=11,
                          noise=NoiseConfig(pii=1.0))
    simulate(spec, LocalLandingStore(tmp_path / "landing"), LocalLandingStore(tmp_path / "truth"), half_right, "t")
    gone = make_personas(3, 11)[0].user_id
    (tmp_path / "opt_out.txt").write_text(f"user:{gone}\n")
    resources = {"landing": LandingZone(url=str(tmp_path / "landing"), s3=S3Resource()),
                 "warehouse": Warehouse(path=str(tmp_path / "wh.duckdb")),
                 "opt_out": OptOutList(path=str(tmp_path / "opt_out.txt"))}
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(2):  # a second run replaces the partition
        result = dg.materialize([raw_sessions, refined_targets, filtered_dataset], partition_key="2026-11-02",
                                resources=resources, instance=instance)
        assert result.success
        assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()
                if e.asset_key == dg.AssetKey("filtered_dataset")} == {
            "accounting_check": True, "no_pii_check": True, "no_duplicates_check": True, "no_opt_out_check": True}
    with warehouse.connect(tmp_path / "wh.duckdb", read_only=True) as con:
        rows, refined = con.execute("SELECT (SELECT count(*) FROM filtered_dataset), "
                                    "(SELECT count(*) FROM refined_targets)").fetchone()
        # The opted-out user's events stop at ingest (counted), so no row of theirs exists downstream.
        opted = con.execute("SELECT (SELECT sum(opted_out) FROM ingest_log), (SELECT count(*) FROM raw_sessions "
                            "WHERE user_id = $u), (SELECT count(*) FROM filtered_dataset WHERE user_id = $u)",
                            {"u": gone}).fetchone()
        training = con.execute("SELECT count(*) FROM training_examples").fetchone()[0]
        text = "".join(t or "" for row in con.execute("SELECT prefix, target, suffix FROM training_examples "
                                                       "UNION ALL SELECT prefix, target, suffix FROM eval_set").fetchall()
                       for t in row)
    assert rows == refined and training > 0
    assert opted[0] > 0 and opted[1:] == (0, 0)  # before: their rows reached filtered_dataset, text nulled
    assert "AKIA" not in text and "ghp_" not in text and "@example.org" not in text


def test_the_pii_re_scan_finds_what_slipped_into_kept_rows(tmp_path):
    from echo_dagster.filters.checks import leaks

    day = date(2026, 11, 2)
    with warehouse.connect(tmp_path / "wh.duckdb") as con:
        rows = [("clean", "x = 1\n", "y = 2\n", None), ("mail", "a = 1\n", "# ask jane.doe@example.org\n", None),
                ("key", 'K = """-----BEGIN RSA PRIVATE KEY-----\n', "MIIEow\n-----END RSA PRIVATE KEY-----\n", None),
                ("dropped", "", "db = '10.20.30.40'\n", "trivial")]
        for cid, prefix, target, reason in rows:
            con.execute("INSERT INTO filtered_dataset (partition_date, completion_id, prefix, target, suffix, "
                        "drop_reason) VALUES ($d, $c, $p, $t, '', $r)", {"d": day, "c": cid, "p": prefix, "t": target,
                                                                       "r": reason})
        assert sorted(leaks(con, day, batch_rows=2)) == [("key", "PRIVATE_KEY"), ("mail", "EMAIL_ADDRESS")]


# --- Privacy: every column of every kept row, through the three harvest assets ------------------------

DAY = date(2026, 11, 2)


def write_session(store, session_id: str, document: str, completions: list[tuple[int, int, str, str | None]], *,
                  path: str, repo: str, start_s: int = 0) -> None:
    """One session writing `document`: per completion (region start, region end, proposal, accepted
    text or None for a rejection), the region shown empty with the proposal, the decision, then a
    save of the final document; then the close."""
    import json
    from datetime import datetime, timedelta, timezone

    from echo_dagster.events import format_ts

    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc) + timedelta(seconds=start_s)
    common = {"schema_version": 1, "session_id": session_id, "user_id": "u-7", "tenant_id": "t-1", "repo": repo,
              "path": path, "language": "python", "client": "test/1.0"}
    events = []
    for n, (a, b, proposal, accepted) in enumerate(completions):
        at, cid = t0 + timedelta(seconds=120 * n), f"{session_id}-c{n}"
        events.append({**common, "event": "completion_shown", "ts": format_ts(at), "completion_id": cid,
                       "model": "m", "cursor": a, "prefix": document[:a], "suffix": document[b:],
                       "proposal": proposal, "latency_ms": 80.0})
        if accepted is None:
            events.append({**common, "event": "completion_rejected", "ts": format_ts(at + timedelta(seconds=2)),
                           "completion_id": cid, "reason": "typed_over"})
        else:
            events.append({**common, "event": "completion_accepted", "ts": format_ts(at + timedelta(seconds=2)),
                           "completion_id": cid, "accepted_text": accepted})
        events.append({**common, "event": "document_snapshot", "ts": format_ts(at + timedelta(seconds=60)),
                       "document": document, "trigger": "save", "seq": n})
    events.append({**common, "event": "document_closed",
                   "ts": format_ts(t0 + timedelta(seconds=120 * len(completions) + 5))})
    lines = [json.dumps({**e, "event_id": f"{session_id}-e{i}"}) for i, e in enumerate(events)]
    store.write(f"{DAY.isoformat()}/{session_id}.jsonl", ("\n".join(lines) + "\n").encode())


def materialize_day(tmp_path):
    resources = {"landing": LandingZone(url=str(tmp_path / "landing"), s3=S3Resource()),
                 "warehouse": Warehouse(path=str(tmp_path / "wh.duckdb")),
                 "opt_out": OptOutList(path=str(tmp_path / "opt_out.txt"))}
    result = dg.materialize([raw_sessions, refined_targets, filtered_dataset], partition_key=DAY.isoformat(),
                            resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()
            if e.asset_key == dg.AssetKey("filtered_dataset")}


def kept_text_columns(db) -> list[tuple[str, str, str]]:
    """(table, column, text) of every VARCHAR column of every row of every table that outlives
    retention (the raw tables expire), dropped rows of filtered_dataset included."""
    from echo_dagster.retention import RAW_TABLES
    from echo_dagster.schema import TABLES

    found = []
    with warehouse.connect(db, read_only=True) as con:
        for table in sorted(TABLES.keys() - set(RAW_TABLES)):
            names = [n for n, kind, *_ in con.execute(f"DESCRIBE {table}").fetchall() if kind == "VARCHAR"]
            for row in con.execute(f"SELECT {', '.join(names)} FROM {table}").fetchall() if names else []:
                found += [(table, n, v) for n, v in zip(names, row) if v]
    return found


def test_an_edited_proposal_leaves_no_pii_in_the_kept_row(tmp_path):
    """The issue's reproduction: the accepted proposal held an e-mail and a key, the user edited them
    away before the final snapshot; the kept row stored them in `proposal` and `accepted_text`."""
    leaked = "server.login(user, password)  # jane.doe@acme-corp.io AKIAIOSFODNN7EXAMPLE\n"
    document = ("import smtplib\n\n\ndef send(host, user, password, message):\n"
                "    server = smtplib.SMTP(host)\n    server.login(user, password)\n"
                "    server.sendmail(user, [user], message)\n    server.quit()\n")
    a = document.index("    server.login") + 4
    b = document.index("\n", a) + 1
    write_session(LocalLandingStore(tmp_path / "landing"), "s-1", document, [(a, b, leaked, leaked)],
                  path="/home/jane.doe/work/mailer/send.py", repo="mailer")
    checks = materialize_day(tmp_path)
    assert checks == {"accounting_check": True, "no_pii_check": True, "no_duplicates_check": True,
                      "no_opt_out_check": True}
    stored = kept_text_columns(tmp_path / "wh.duckdb")
    assert {c for _, c, _ in stored} >= {"proposal", "accepted_text", "target", "path"}  # the row is kept
    for secret in ("jane.doe", "AKIAIOSFODNN7EXAMPLE"):
        assert not [(c, v) for _, c, v in stored if secret in v]


def test_planted_values_do_not_survive_the_harvest(tmp_path):
    """Sessions writing the planted corpus' files (person names aside: the NER's recall is measured
    on its own), from home directories, with proposals that hold more planted values: no planted
    string is in any text column of any kept row."""
    import random

    from echo_dagster_tests.planted import planted_corpus, value

    rng = random.Random(5)
    store = LocalLandingStore(tmp_path / "landing")
    planted = set()
    files = [f for f in planted_corpus() if all(p.kind != "person_name" for p in f.plants)]
    for n, f in enumerate(files):
        planted.update(p.value for p in f.plants)
        home = value("home_dir", rng)
        planted.add(home)
        starts = [i + 1 for i, c in enumerate(f.text) if c == "\n" and i + 1 < len(f.text)]
        lines = [(a, f.text.index("\n", a) + 1) for a in starts
                 if "=" in f.text[a : f.text.index("\n", a)] and len(f.text[a : f.text.index("\n", a)]) > 12]
        completions = []
        for a, b in sorted(rng.sample(lines, min(3, len(lines)))):
            line = f.text[a:b]
            if rng.random() < 0.5:  # accepted as proposed
                completions.append((a, b, line, line))
            else:  # rejected: the proposal held a value of its own
                extra = value(rng.choice(("email", "aws_access_key", "github_token", "stripe_key", "phone",
                                          "google_api_key", "iban", "credit_card")), rng)
                planted.add(extra)
                completions.append((a, b, line.rstrip("\n") + f"  # {extra}\n", None))
        write_session(store, f"s-{n:03d}", f.text, completions, path=f"/home/{home}/billing/{f.name}",
                      repo="billing", start_s=600 * n)
    checks = materialize_day(tmp_path)
    assert checks == {"accounting_check": True, "no_pii_check": True, "no_duplicates_check": True,
                      "no_opt_out_check": True}
    stored = kept_text_columns(tmp_path / "wh.duckdb")
    assert sum(1 for table, column, _ in stored if column == "completion_id") >= 20
    survivors = [(table, column, v) for table, column, text in stored for v in planted if v in text]
    assert not survivors, survivors[:5]


def test_the_leak_check_reads_every_text_column(tmp_path):
    """Values the redactor missed, in columns it once skipped, are caught; placeholders and ids are not."""
    from echo_dagster.filters.checks import leaks

    with warehouse.connect(tmp_path / "wh.duckdb") as con:
        rows = [
            ("clean", {"prefix": "x = 1\n", "target": "y = 2\n", "proposal": "y = 3\n"}),
            ("accepted", {"prefix": "", "target": "y = 2\n", "accepted_text": 'key = "AKIAIOSFODNN7EXAMPLE"\n'}),
            ("path", {"prefix": "", "target": "y = 2\n", "path": "/srv/keys/AKIAIOSFODNN7EXAMPLE.py"}),
            ("repo", {"prefix": "", "target": "y = 2\n", "repo": "ravi.patel@globex.com"}),
            ("stripe", {"prefix": "", "target": "y = 2\n", "proposal": "# sk_live_4eC39HqLyjWDarjtT1zdp7dc\n"}),
            ("placeholders", {"prefix": 'password = "<SECRET>"\n# <EMAIL> <PHONE>\n',
                              "target": 'DB = "postgresql://u:<SECRET>@<IP>/db"\n', "path": "/home/<USER>/x.py",
                              "dedup_key": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                              "session_id": "sim1-2026-11-02-000-00", "user_id": "1f0e4a52-4155-5501-42aa-3b1c"}),
        ]
        for cid, columns in rows:
            columns = {"suffix": "", **columns}
            names = ", ".join(columns)
            con.execute(f"INSERT INTO filtered_dataset (partition_date, completion_id, {names}) VALUES "
                        f"($d, $c, {', '.join('$' + n for n in columns)})", {"d": DAY, "c": cid, **columns})
        found = leaks(con, DAY, batch_rows=2)
    assert sorted(found) == [("accepted", "AWS_KEY"), ("path", "AWS_KEY"), ("repo", "EMAIL_ADDRESS"),
                             ("stripe", "STRIPE_KEY")]
    assert {leak.completion_id: leak.column for leak in found} == {"accepted": "accepted_text", "path": "path",
                                                                  "repo": "repo", "stripe": "proposal"}
