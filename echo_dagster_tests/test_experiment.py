"""The experiment end to end at a tiny size: every arm trained from the same base with Echo's token
budget, every model measured on the same rows, paired comparisons, the gate, the report."""

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from echo_dagster import warehouse
from echo_dagster.experiment import arms
from echo_dagster.experiment.run import ExperimentSpec, harvest, recorded_spec, run_experiment, train_arms
from echo_dagster.model.generation import GenerationConfig
from echo_dagster.splits import file_split
from echo_dagster.training import window
from echo_dagster.training.trainer import TrainSettings
from echo_dagster_tests.conftest import REPO
from echo_dagster_tests.test_simulate import SOURCE, half_right

TINY_TRAINING = TrainSettings(lora_r=4, lora_alpha=8, lora_dropout=0.0, batch_size=4, context_tokens=64,
                              max_target_tokens=16, epochs=2, max_steps=4, save_every=1000)


def tiny(model_dir, **overrides) -> ExperimentSpec:
    return replace(ExperimentSpec(
        base_model=str(model_dir), source=SOURCE, days=2, users=4, eval_users=2, sessions_per_user_day=1,
        eval_rows=40, replay_completions=4, replay_users=1, humaneval_lines=0, stdlib_lines=6,
        repository_examples=40, train=TINY_TRAINING, generation=GenerationConfig(context_tokens=64, max_new_tokens=8),
        resamples=100), **overrides)


def test_the_experiment_compares_every_arm_on_the_same_rows(tmp_path, tiny_model_dir):
    # The oracle proposes in the simulation (a tiny random model would have nothing accepted).
    result = run_experiment(tiny(tiny_model_dir, arms=arms.ARMS), tmp_path / "exp", tmp_path / "models",
                            log=lambda _: None, propose=half_right)
    names = [r.arm.roles[0] for r in result.results]
    assert names == ["base", "echo", "naive_logs", "untrimmed", "repository", "repository_completions", "preference"]
    rows = {tuple(s.completion_id for s in r.scored) for r in result.results}
    assert len(rows) == 1 and len(next(iter(rows))) > 0  # paired: the same held-out rows for every model
    budget = result.training["echo"]["tokens"]
    for arm in ("naive_logs", "untrimmed", "repository", "repository_completions"):
        assert result.training[arm]["examples"] > 0
        trained = result.training[arm]
        # Echo's budget (a batch over at most), unless its held-out loss stopped improving first or
        # it made its passes over its data.
        assert (budget <= trained["tokens"] < budget + 4 * 80 or trained["stopped_early"]
                or trained["passes"] >= result.training["echo"]["passes"]), (arm, trained)
        assert trained["passes"] <= ExperimentSpec.max_passes + 1
        assert set(result.comparisons[arm]) == {"vs_base", "vs_echo", "vs_base_by_language"}
    assert result.comparisons["echo"]["vs_echo"] is None
    # The preference arm starts from Echo's checkpoint and takes its own pairs once, beyond the budget.
    preference = json.loads((result.folder / "registry" / result.training["preference"]["checkpoint"]
                             / "echo_meta.json").read_text())
    assert preference["base_model"].endswith(f"{result.training['echo']['checkpoint']}/merged")
    assert preference["config"]["objective"] == "dpo" and result.training["preference"]["examples"] > 0
    assert set(result.comparisons["preference"]) == {"vs_base", "vs_echo", "vs_base_by_language"}
    figures = json.loads((result.page.parent / "report.json").read_text())
    assert figures["gate"]["promote"] == result.verdict.promote and result.page.is_file()
    assert figures["provenance"]["commit"] and figures["provenance"]["config"]["days"] == 2
    assert "| base |" in result.table() and "Δ vs Echo" in result.table() and "passes" in result.table()
    # The raw scores recompute every interval of the report.
    from echo_dagster.evaluation import offline, report

    raw = json.loads((result.page.parent / "scores.json").read_text())
    for r in result.results:
        again = report.result_from(raw, r.arm.name, resamples=100)  # scores kept to 4 decimals
        assert again.summary["kept_chars"] == r.summary["kept_chars"] and again.humaneval == r.humaneval
        assert again.summary["edit_similarity"] == pytest.approx(r.summary["edit_similarity"], abs=1e-3)
        assert again.stdlib_summary.get("kept_chars") == r.stdlib_summary.get("kept_chars")
        assert {g: v["kept_chars"] for g, v in again.by_language.items()} == {
            g: v["kept_chars"] for g, v in r.by_language.items()}
        # Each row's target and the model's proposals are kept: scoring them again needs no model.
        kept_rows = [{"completion_id": c, "language": "", "source_kind": "", "target": t}
                     for c, t in zip(raw["rows"]["completion_id"], raw["rows"]["target"])]
        rescored = offline.score(kept_rows, raw["models"][r.arm.name]["scores"]["proposal"])
        assert [x.kept for x in rescored] == [x.kept for x in r.scored]
        assert [x.accepted for x in rescored] == [x.accepted for x in r.scored]
    # benchmarks/experiment_arms.py compares raw scores as the experiment did.
    compared = subprocess.run([sys.executable, str(REPO / "benchmarks" / "experiment_arms.py"), "compare",
                               str(result.page.parent / "scores.json"), "--resamples", "100", "--folder",
                               str(result.folder), "--out", str(tmp_path / "joined.json")],
                              capture_output=True, text=True, timeout=300)
    assert compared.returncode == 0, compared.stderr
    assert result.table().splitlines()[2] in compared.stdout  # the base's row, the same figures
    assert f"promotion gate: {'promoted' if result.verdict.promote else 'not promoted'}" in compared.stdout
    joined = json.loads((tmp_path / "joined.summary.json").read_text())
    assert joined["gate"]["promote"] == result.verdict.promote
    # ... and measures a folder's models again on the experiment's rows, each arm at Echo's budget.
    measured = subprocess.run([sys.executable, str(REPO / "benchmarks" / "experiment_arms.py"), "measure",
                               "--folder", str(result.folder), "--arms", "base, naive_logs",
                               "--out", str(tmp_path / "again.json")], capture_output=True, text=True, timeout=300,
                              env=os.environ | {"ECHO_HOME": str(tmp_path / "home")})
    assert measured.returncode == 0, measured.stderr
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["rows"] == raw["rows"] and list(again["models"]) == ["base", "naive logs"]


def test_an_unknown_arm_is_named():
    with pytest.raises(ValueError, match=r"\['dpo'\]: expected some of echo"):
        ExperimentSpec(base_model="m", arms=("echo", "dpo"))


def test_no_arm_trains_on_a_held_out_file(tmp_path, tiny_model_dir):
    run_experiment(tiny(tiny_model_dir, arms=("echo",), replay_completions=0, stdlib_lines=0), tmp_path / "exp",
                   tmp_path / "models", log=lambda _: None, propose=half_right)
    with warehouse.connect(tmp_path / "exp" / "warehouse.duckdb", read_only=True) as con:
        data = {"echo": window.load(con, window.Window()).examples} | {
            arm: arms.examples(con, arm) for arm in ("naive_logs", "untrimmed", "preference")}
        eval_files = {r for r, in con.execute("SELECT DISTINCT path FROM eval_set").fetchall()}
    assert all(data.values()) and eval_files
    for arm, examples in data.items():
        assert all(file_split(e["repo"], e["path"]) == "train" for e in examples), arm
        assert not {e["path"] for e in examples} & eval_files, arm
    # A preference pair is an Echo example whose user did not keep the proposal as shown.
    echo = {e["target"] for e in data["echo"]}
    assert all(p["target"] in echo and p["rejected"].rstrip() != p["target"].rstrip() for p in data["preference"])
    # The untrimmed arm keeps the whole region the user wrote; Echo's targets are cut from it.
    assert sum(len(e["target"]) for e in data["untrimmed"]) > sum(len(e["target"]) for e in data["echo"])


def test_a_resumed_run_reuses_its_simulation_and_trained_arms_and_measures_again(tmp_path, tiny_model_dir):
    spec = tiny(tiny_model_dir, arms=("echo", "naive_logs"), replay_completions=0, stdlib_lines=0)
    first = run_experiment(spec, tmp_path / "exp", tmp_path / "models", log=lambda _: None, propose=half_right)
    registry = tmp_path / "exp" / "registry"
    published = {p.parent.name: p.read_text() for p in registry.glob("*/echo_meta.json")}
    events = sorted(p.stat().st_mtime_ns for p in (tmp_path / "exp" / "landing").rglob("*.gz"))

    def no_proposer(*_):
        raise AssertionError("simulated again")

    again = run_experiment(spec, tmp_path / "exp", tmp_path / "models", log=lambda _: None, propose=no_proposer,
                           resume=True)
    assert again.simulation == first.simulation | {"reused": True}
    assert {p.parent.name: p.read_text() for p in registry.glob("*/echo_meta.json")} == published  # not retrained
    assert sorted(p.stat().st_mtime_ns for p in (tmp_path / "exp" / "landing").rglob("*.gz")) == events
    assert again.training == first.training and again.harvest == first.harvest
    # What benchmarks/experiment_arms.py train does: the folder's spec, its arms found again, not retrained.
    assert recorded_spec(tmp_path / "exp") == spec
    assert train_arms(spec, tmp_path / "exp", harvest(spec, tmp_path / "exp"), tmp_path / "models",
                      log=lambda _: None, reuse=True, only=()) == {"echo": first.training["echo"]}
    with pytest.raises(ValueError, match="naive_log'.*arms are echo, naive_logs"):
        train_arms(spec, tmp_path / "exp", harvest(spec, tmp_path / "exp"), tmp_path / "models", only=("naive_log",))
    for a, b in zip(first.results, again.results):  # measured again, the same: greedy decoding on the same rows
        assert [s.kept for s in a.scored] == [s.kept for s in b.scored]
    with pytest.raises(ValueError, match="another spec .days differ"):
        run_experiment(replace(spec, days=1), tmp_path / "exp", tmp_path / "models", log=lambda _: None, resume=True)
    with pytest.raises(ValueError, match="no experiment's run to resume"):
        run_experiment(spec, tmp_path / "elsewhere", tmp_path / "models", log=lambda _: None, resume=True)


def test_the_gpu_script_runs_at_a_tiny_scale_on_the_cpu(tmp_path, tiny_model_dir):
    """benchmarks/gpu_experiment.py, prepared for a GPU, run as its docstring says at a tiny scale."""
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_experiment.py"), "--model",
                           str(tiny_model_dir), "--scale", "0.05", "--days", "1", "--device", "cpu", "--out",
                           str(tmp_path / "exp")],
                          capture_output=True, text=True, timeout=900, cwd=REPO / "benchmarks",
                          env={**os.environ, "ECHO_HOME": str(tmp_path / "home"),
                               "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    start = done.stdout.index('{\n  "device"')
    record = json.loads(done.stdout[start : done.stdout.index("\n}\n", start) + 2])
    assert record["device"] == "cpu" and record["parameters"] > 0 and record["completions"] > 0
    assert "echo" in record["training"] and "| base |" in done.stdout

