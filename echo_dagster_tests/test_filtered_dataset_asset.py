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
        opted = con.execute("SELECT count(*), count(target), count(prefix) FROM filtered_dataset "
                            "WHERE user_id = $u", {"u": gone}).fetchone()
        training = con.execute("SELECT count(*) FROM training_examples").fetchone()[0]
        text = "".join(t or "" for row in con.execute("SELECT prefix, target, suffix FROM training_examples "
                                                       "UNION ALL SELECT prefix, target, suffix FROM eval_set").fetchall()
                       for t in row)
    assert rows == refined and training > 0
    assert opted[0] > 0 and opted[1:] == (0, 0)
    assert "AKIA" not in text and "ghp_" not in text and "@example.org" not in text


def test_the_pii_re_scan_finds_what_slipped_into_kept_rows(tmp_path):
    from echo_dagster.filters.partition import leaks

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
