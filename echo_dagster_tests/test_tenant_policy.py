"""Tenant policies in the pipeline: whose rows train and measure which model (serving is tested in
test_serving). Tenants: acme pooled (the default), initech own, hooli excluded."""

import dagster as dg
import pytest

from echo_dagster import tenancy, warehouse
from echo_dagster.defs.finetuned_checkpoint_asset import finetuned_checkpoint
from echo_dagster.defs.sensors import evaluate_sensor, retrain_sensor
from echo_dagster.evaluation.offline import held_out_rows
from echo_dagster.training.registry import Registry
from echo_dagster.training.window import Window, load, tenant_filter
from echo_dagster_tests.test_training import DAY, resources, run_config

TENANTS = {"acme": 30, "initech": 20, "hooli": 25}  # training rows each


@pytest.fixture
def policy(tmp_path, monkeypatch):
    path = tmp_path / "tenant_policy.json"
    monkeypatch.setenv("ECHO_TENANT_POLICY", str(path))
    monkeypatch.setenv("ECHO_HOME", str(tmp_path / "home"))
    tenancy.set_policy(path, "initech", "own")
    tenancy.set_policy(path, "hooli", "excluded")
    db = tmp_path / "wh.duckdb"
    with warehouse.connect(db) as con:
        for tenant, count in TENANTS.items():
            for n in range(count):
                for split in ("train", "eval"):
                    con.execute("INSERT INTO filtered_dataset (partition_date, completion_id, tenant_id, language, "
                                "prefix, suffix, target, split) VALUES ($d, $c, $t, 'python', $p, '\n', $g, $s)",
                                {"d": DAY, "c": f"{tenant}-{split}-{n}", "t": tenant, "s": split,
                                 "p": f"def {tenant}_{n}(r):\n    ",
                                 # An eval target unlike every training target: none is decontaminated.
                                 "g": f"return {n} * r\n" if split == "train" else f"yield r - {n} ** 2\n"})
    return tenancy.load(path)


def test_each_model_sees_only_the_rows_its_tenants_policies_allow(tmp_path, policy):
    with warehouse.connect(tmp_path / "wh.duckdb", read_only=True) as con:
        pooled = load(con, Window(), tenant_filter(policy, None))
        own = load(con, Window(), tenant_filter(policy, "initech"))
        measured = {t: {r["completion_id"].split("-")[0] for r in held_out_rows(con, 500, tenants=tenant_filter(
            policy, t))} for t in (None, "initech")}
    assert pooled.rows_per_tenant == {"acme": 30} and own.rows_per_tenant == {"initech": 20}
    assert measured == {None: {"acme"}, "initech": {"initech"}}
    with pytest.raises(ValueError, match="policy 'excluded'"):
        tenant_filter(policy, "hooli")
    # Where the default is not pooled, only the tenants named pooled train the shared model.
    strict = tenancy.TenantPolicy("excluded", {"initech": "pooled"})
    with warehouse.connect(tmp_path / "wh.duckdb", read_only=True) as con:
        assert load(con, Window(), tenant_filter(strict, None)).rows_per_tenant == {"initech": 20}


def test_an_own_model_is_trained_on_its_tenants_rows_and_named_for_it(tmp_path, tiny_model_dir, policy):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([finetuned_checkpoint], resources=resources(tmp_path),
                            run_config=run_config(tiny_model_dir, max_steps=2, tenant="initech"), instance=instance)
    (materialization,) = result.asset_materializations_for_node("finetuned_checkpoint")
    name = materialization.metadata["name"].value
    meta = Registry(tmp_path / "registry").meta(name)
    assert name.startswith("echo-initech-") and meta["tenant"] == "initech"
    assert meta["data"]["rows_per_tenant"] == {"initech": 20}
    assert materialization.metadata["trained_for"].value == "initech"
    table = materialization.metadata["tenants"].value
    assert "| hooli | excluded | 0 |" in table and "| initech | own | 20 |" in table
    assert Registry(tmp_path / "registry").latest("echo") is None  # not the pooled model's
    # Its evaluation is asked for that tenant: its own held-out rows, its own champion.
    with dg.build_sensor_context(instance=instance) as context:
        [request] = list(evaluate_sensor(context))
    assert request.run_config == {"ops": {"eval_report": {"config": {"tenant": "initech"}}}}
    refused = dg.materialize([finetuned_checkpoint], resources=resources(tmp_path), raise_on_error=False,
                             run_config=run_config(tiny_model_dir, tenant="acme"), instance=instance)
    assert not refused.success  # acme is pooled: it has no model of its own


def test_the_retrain_sensor_asks_for_the_pooled_model_and_each_own_tenant(tmp_path, policy, monkeypatch):
    monkeypatch.setenv("ECHO_RETRAIN_THRESHOLD", "25")
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=resources(tmp_path)) as context:
        requests = retrain_sensor(context)
    # acme's 30 rows start the pooled model; initech's 20 are below the threshold; hooli's never count.
    assert [r.run_key for r in requests] == ["after-start"] and requests[0].tags["echo/new_rows"] == "30"
    monkeypatch.setenv("ECHO_RETRAIN_THRESHOLD", "20")
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=resources(tmp_path)) as context:
        requests = retrain_sensor(context)
    assert [r.run_key for r in requests] == ["after-start", "initech-after-start"]
    assert requests[1].run_config == {"ops": {"finetuned_checkpoint": {"config": {"tenant": "initech"}}}}
    # Where every tenant is `own` by default, each with rows gets its model; hooli stays excluded.
    tenancy.set_policy(tmp_path / "tenant_policy.json", "*", "own")
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=resources(tmp_path)) as context:
        requests = retrain_sensor(context)
    assert [r.run_key for r in requests] == ["acme-after-start", "initech-after-start"]


def test_a_policy_names_tenants_that_can_name_folders(tmp_path):
    for bad in ("../x", "pooled", "", "a/b"):
        with pytest.raises(tenancy.PolicyError, match="tenant id"):
            tenancy.set_policy(tmp_path / "p.json", bad, "own")
    (tmp_path / "p.json").write_text('{"tenants": {"x/y": "own"}}')
    with pytest.raises(tenancy.PolicyError, match="tenant id 'x/y'"):
        tenancy.load(tmp_path / "p.json")
