"""Training: finetuned_checkpoint in train_job with a tiny random model, the registry, resuming after a
kill, and retrain_sensor."""

import json
import subprocess
import sys
from datetime import date, timedelta

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from echo_dagster import warehouse
from echo_dagster.defs.finetuned_checkpoint_asset import finetuned_checkpoint
from echo_dagster.defs.jobs import train_job
from echo_dagster.defs.resources import ModelRegistry, Warehouse
from echo_dagster.defs.sensors import retrain_sensor
from echo_dagster.training.examples import IGNORE, encode
from echo_dagster.training.registry import Registry

DAY = date(2026, 11, 2)


def add_examples(db, day: date, count: int, start: int = 0) -> None:
    """Kept training rows of filtered_dataset for `day`."""
    with warehouse.connect(db) as con:
        for n in range(start, start + count):
            con.execute("INSERT INTO filtered_dataset (partition_date, completion_id, language, prefix, suffix, "
                        "target, split) VALUES ($d, $c, 'python', $p, '\n', $t, 'train')",
                        {"d": day, "c": f"{day}-{n}", "p": f"def area_{n}(r):\n    ",
                         "t": f"return {n} * r * r\n"})


def resources(tmp_path):
    return {"warehouse": Warehouse(path=str(tmp_path / "wh.duckdb")),
            "models": ModelRegistry(url=str(tmp_path / "registry"), s3=S3Resource(), cache_dir=str(tmp_path / "c"))}


def run_config(model_dir, **overrides):
    config = {"base_model": str(model_dir), "batch_size": 4, "max_steps": 6, "save_every": 2, "lora_r": 4,
              "lora_alpha": 8, "min_examples": 8, "context_tokens": 64} | overrides
    return dg.RunConfig(ops={"finetuned_checkpoint": {"config": config}})


def test_targets_carry_the_loss_and_prompts_are_generations(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoded = encode(tokenizer, "def f(x):\n    ", "", "return x\n", "python", context_tokens=32,
                     max_target_tokens=16)
    prompt = [i for i, label in zip(encoded.input_ids, encoded.labels) if label == IGNORE]
    target = [label for label in encoded.labels if label != IGNORE]
    # The typed indentation is the model's to write, as when it proposes.
    assert tokenizer.decode(target[:-1]) == "    return x\n" and target[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(prompt) == "def f(x):\n"


def test_train_job_registers_a_checkpoint_plain_libraries_load(tmp_path, tiny_model_dir, monkeypatch):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("ECHO_HOME", str(tmp_path / "home"))
    add_examples(tmp_path / "wh.duckdb", DAY, 12)
    add_examples(tmp_path / "wh.duckdb", DAY + timedelta(days=1), 12, start=100)
    defs = dg.Definitions(assets=[finetuned_checkpoint], jobs=[train_job], resources=resources(tmp_path))
    result = defs.resolve_job_def("train_job").execute_in_process(run_config=run_config(tiny_model_dir),
                                                             instance=dg.DagsterInstance.ephemeral())
    assert result.success
    (materialization,) = result.asset_materializations_for_node("finetuned_checkpoint")
    name = materialization.metadata["name"].value
    registry = Registry(tmp_path / "registry")
    meta = registry.meta(name)
    assert meta["data"]["examples"] == 24 and meta["data"]["cutoff"] == (DAY + timedelta(days=1)).isoformat()
    assert meta["data"]["rows_per_partition"] == {DAY.isoformat(): 12, (DAY + timedelta(days=1)).isoformat(): 12}
    assert meta["metrics"]["steps"] == 6 and meta["metrics"]["final_loss"] > 0 and len(meta["data"]["hash"]) == 64
    assert meta["config"]["lora_r"] == 4 and meta["seed"] == 0 and meta["code_version"].startswith("echo-dagster")
    folder = registry.local(name)
    tokenizer = AutoTokenizer.from_pretrained(folder / "merged")
    merged = AutoModelForCausalLM.from_pretrained(folder / "merged")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    adapted = PeftModel.from_pretrained(base, folder / "adapter")
    ids = tokenizer("def area(r):\n    ", return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(merged(**ids).logits, adapted(**ids).logits, atol=1e-4)
        out = merged.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > ids["input_ids"].shape[1]

    # The next training can start from the champion, the merged model of the last one.
    registry.set_champion(name, "test")
    again = defs.resolve_job_def("train_job").execute_in_process(
        run_config=run_config(tiny_model_dir, start_from="champion", max_steps=2), instance=dg.DagsterInstance.ephemeral())
    (second,) = again.asset_materializations_for_node("finetuned_checkpoint")
    meta = registry.meta(second.metadata["name"].value)
    assert meta["started_from"] == "champion" and meta["champion_at_start"] == name
    assert meta["base_model"] == str(folder / "merged")


def test_too_few_examples_is_a_skip_that_says_how_many(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("ECHO_HOME", str(tmp_path / "home"))
    add_examples(tmp_path / "wh.duckdb", DAY, 3)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([finetuned_checkpoint], resources=resources(tmp_path),
                            run_config=run_config(tiny_model_dir), instance=instance)
    assert result.success and result.asset_materializations_for_node("finetuned_checkpoint") == []
    logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("3 training examples" in m and "min_examples=8" in m for m in logs)
    assert Registry(tmp_path / "registry").names() == []


TRAIN_SCRIPT = """
import json, sys
from echo_dagster.training.trainer import TrainSettings, train
examples = [{"prefix": f"def area_{n}(r):\\n    ", "suffix": "", "target": f"return {n} * r * r\\n",
             "language": "python"} for n in range(40)]
settings = TrainSettings(batch_size=4, save_every=2, lora_r=4, lora_alpha=8, context_tokens=64, lora_dropout=0.0)
result = train(sys.argv[1], sys.argv[2], examples, sys.argv[3], sys.argv[4], settings,
               lambda p: print(json.dumps({"step": p.step, "loss": p.loss}), flush=True))
print(json.dumps({"resumed_from": result.resumed_from, "steps": result.steps}), flush=True)
"""


def test_a_killed_training_resumes_from_its_last_saved_step(tmp_path, tiny_model_dir):
    def launch(work, out):
        return subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(tiny_model_dir), str(tmp_path / "m"),
                                 str(work), str(out)], stdout=subprocess.PIPE, text=True)

    def losses(lines):
        return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}

    whole = launch(tmp_path / "whole", tmp_path / "whole-out")
    reference = losses(whole.communicate(timeout=300)[0].splitlines())
    assert whole.returncode == 0 and len(reference) == 10

    killed = launch(tmp_path / "work", tmp_path / "out")
    seen = []
    for line in killed.stdout:  # kill it once a state is saved and a step beyond it has run
        seen.append(line)
        if (tmp_path / "work" / "state" / "step.json").is_file() and len(seen) >= 5:
            killed.kill()
            break
    killed.wait(timeout=60)
    saved = json.loads((tmp_path / "work" / "state" / "step.json").read_text())["step"]
    assert 0 < saved < 10 and not (tmp_path / "out" / "merged").exists()

    again = launch(tmp_path / "work", tmp_path / "out")
    lines = again.communicate(timeout=300)[0].splitlines()
    assert again.returncode == 0 and json.loads(lines[-1])["resumed_from"] == saved
    resumed = losses(lines)
    assert sorted(resumed) == list(range(saved + 1, 11))
    # The same batches and the same weights: the resumed steps' losses are the uninterrupted run's.
    assert all(resumed[s] == pytest.approx(reference[s], rel=1e-4) for s in resumed)
    assert (tmp_path / "out" / "merged" / "config.json").is_file()


def test_retrain_sensor_counts_examples_after_the_latest_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("ECHO_RETRAIN_THRESHOLD", "20")
    db = tmp_path / "wh.duckdb"
    add_examples(db, DAY, 12)
    instance = dg.DagsterInstance.ephemeral()

    def evaluate():
        with dg.build_sensor_context(instance=instance, resources=resources(tmp_path)) as context:
            return retrain_sensor(context), context.cursor

    skip, cursor = evaluate()  # below the threshold
    assert isinstance(skip, dg.SkipReason) and "12 training examples" in skip.skip_message and "20" in skip.skip_message
    assert json.loads(cursor)["pooled"]["new_rows"] == 12
    add_examples(db, DAY + timedelta(days=1), 8, start=100)
    [request], _ = evaluate()  # at the threshold
    assert isinstance(request, dg.RunRequest) and request.run_key == "after-start"
    [again], _ = evaluate()  # nothing new trained yet: the same key, which Dagster runs once
    assert again.run_key == request.run_key

    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "echo_meta.json").write_text(json.dumps({
        "name": "c1", "created_at": "2026-11-04T00:00:00Z", "data": {"cutoff": (DAY + timedelta(days=1)).isoformat()}}))
    Registry(tmp_path / "registry").publish(checkpoint, "c1")
    skip, _ = evaluate()  # a checkpoint took them all
    assert isinstance(skip, dg.SkipReason) and skip.skip_message.startswith("pooled: 0 training examples")
    add_examples(db, DAY + timedelta(days=2), 25, start=200)
    [request], _ = evaluate()  # new partitions after the checkpoint's cutoff
    assert request.run_key == f"after-{(DAY + timedelta(days=1)).isoformat()}"


def test_an_s3_registry_publishes_and_fetches(tmp_path, s3_endpoint):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    client.create_bucket(Bucket="models")
    folder = tmp_path / "ckpt"
    (folder / "merged").mkdir(parents=True)
    (folder / "merged" / "config.json").write_text("{}")
    (folder / "echo_meta.json").write_text(json.dumps({"name": "c1", "created_at": "2026-11-04T00:00:00Z"}))
    registry = Registry(s3_client=client, bucket="models", prefix="echo/registry", cache_dir=tmp_path / "cache")
    assert registry.publish(folder, "c1") == "s3://models/echo/registry/c1"
    assert registry.names() == ["c1"] and registry.champion() is None
    registry.set_champion("c1", "first")
    assert registry.champion() == "c1" and registry.latest()["name"] == "c1"
    assert (registry.local("c1") / "merged" / "config.json").read_text() == "{}"
    with pytest.raises(ValueError, match="no checkpoint"):
        registry.set_champion("c2", "missing")


def test_the_repository_baseline_trains_on_training_split_files_with_the_echo_budget(tmp_path, tiny_model_dir,
                                                                                   monkeypatch):
    from echo_dagster.defs.finetuned_checkpoint_asset import repository_checkpoint
    from echo_dagster.splits import file_split, repo_of
    from echo_dagster.training.repository import repository_examples
    from echo_dagster_tests.test_simulate import SOURCE

    examples = repository_examples(SOURCE, 50, seed=1)
    assert len(examples) == 50 and all(file_split(repo_of(e["completion_id"].split(":")[0]),
                                                  e["completion_id"].split(":")[0]) == "train" for e in examples)
    monkeypatch.setenv("ECHO_HOME", str(tmp_path / "home"))
    add_examples(tmp_path / "wh.duckdb", DAY, 16)
    instance = dg.DagsterInstance.ephemeral()
    skipped = dg.materialize([repository_checkpoint], resources=resources(tmp_path), instance=instance,
                             run_config=dg.RunConfig(ops={"repository_checkpoint": {"config": {
                                 "base_model": str(tiny_model_dir), "source": SOURCE}}}))
    assert skipped.success and skipped.asset_materializations_for_node("repository_checkpoint") == []
    dg.materialize([finetuned_checkpoint], resources=resources(tmp_path), run_config=run_config(tiny_model_dir),
                   instance=instance)
    echo = Registry(tmp_path / "registry").latest("echo")
    result = dg.materialize([repository_checkpoint], resources=resources(tmp_path), instance=instance,
                            run_config=dg.RunConfig(ops={"repository_checkpoint": {"config": {
                                "base_model": str(tiny_model_dir), "source": SOURCE, "examples": 64,
                                "batch_size": 4, "context_tokens": 64, "lora_r": 4, "lora_alpha": 8}}}))
    assert result.success
    baseline = Registry(tmp_path / "registry").latest("repository")
    assert baseline["kind"] == "repository" and baseline["data"]["token_budget"] == echo["metrics"]["tokens"]
    # Stops at the first step that reaches the budget.
    assert echo["metrics"]["tokens"] <= baseline["metrics"]["tokens"] < echo["metrics"]["tokens"] + 4 * 200


def test_a_broken_base_model_is_named_in_the_error(tmp_path, tiny_model_dir):
    import shutil

    from echo_dagster.training.trainer import train

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    example = {"prefix": "x = ", "suffix": "", "target": "1\n", "language": "python"}
    with pytest.raises(ValueError, match=f"{broken}.*could not be loaded"):
        train(str(broken), tmp_path / "m", [example], tmp_path / "w", tmp_path / "o")
    with pytest.raises(ValueError, match="expected 'smollm2-135m' or a folder holding config.json"):
        train(str(tmp_path / "missing"), tmp_path / "m", [example], tmp_path / "w", tmp_path / "o")


RUN_TRAINING = """
import sys
import dagster as dg
from echo_dagster_tests.test_training import resources, run_config
from echo_dagster.defs.finetuned_checkpoint_asset import finetuned_checkpoint
from echo_dagster.defs.jobs import train_job
from pathlib import Path
job = dg.Definitions(assets=[finetuned_checkpoint], jobs=[train_job],
                     resources=resources(Path(sys.argv[1]))).resolve_job_def("train_job")
result = job.execute_in_process(run_config=run_config(sys.argv[2], seed=int(sys.argv[3])), instance=dg.DagsterInstance.get())
print(result.run_id)
"""


def test_two_trainings_requested_together_run_one_after_the_other(tmp_path, tiny_model_dir):
    import os
    import shutil

    from echo_dagster_tests.conftest import REPO

    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")  # pool "gpu": one slot
    add_examples(tmp_path / "wh.duckdb", DAY, 16)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:  # made once, as `make instance` does
        instance.event_log_storage.set_concurrency_slots("gpu", 1)
    env = os.environ | {"DAGSTER_HOME": str(dagster_home), "ECHO_HOME": str(tmp_path / "home"),
                        "PYTHONPATH": str(REPO)}
    runs = [subprocess.Popen([sys.executable, "-c", RUN_TRAINING, str(tmp_path), str(tiny_model_dir), str(seed)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert all(run.returncode == 0 for run in runs), [line for _, err in outputs for line in err.splitlines()
                                                     if "Error" in line or "error" in line][-10:]
    run_ids = [out.split()[-1] for out, _ in outputs]
    assert all(run.returncode == 0 for run in runs)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:  # the runs' storage, read back
        spans = []
        for run_id in run_ids:
            events = [e for e in instance.all_logs(run_id) if e.dagster_event]
            start = next(e.timestamp for e in events if e.dagster_event.event_type_value == "STEP_START")
            end = next(e.timestamp for e in events if e.dagster_event.event_type_value == "STEP_SUCCESS")
            spans.append((start, end))
    first, second = sorted(spans)
    assert first[1] <= second[0], spans  # the second training started once the first had ended


def test_the_window_takes_the_last_days_a_cap_and_a_replay_of_older_days(tmp_path):
    from echo_dagster.training.window import Window, load

    db = tmp_path / "wh.duckdb"
    for offset in range(3):
        add_examples(db, DAY + timedelta(days=offset), 10, start=100 * offset)
    with warehouse.connect(db, read_only=True) as con:
        everything = load(con, Window())
        last = load(con, Window(days=1))
        capped = load(con, Window(days=2, max_examples=5, seed=3))
        replayed = load(con, Window(days=1, replay_share=0.5))
        assert load(con, Window(days=1)).hash == last.hash  # the same window, the same data
    assert len(everything.examples) == 30 and everything.cutoff == DAY + timedelta(days=2)
    assert last.rows_per_partition == {(DAY + timedelta(days=2)).isoformat(): 10}
    assert len(capped.examples) == 5 and set(capped.rows_per_partition) <= {
        (DAY + timedelta(days=1)).isoformat(), (DAY + timedelta(days=2)).isoformat()}
    assert replayed.replayed == 5 and len(replayed.examples) == 15 and len(replayed.rows_per_partition) >= 2


def _file_examples(files: int, per_file: int) -> list[dict]:
    return [{"completion_id": f"f{f}-{n}", "repo": "shop", "path": f"pkg/mod_{f}.py", "language": "python",
             "prefix": f"def area_{f}_{n}(r):\n    ", "suffix": "\n", "target": f"return {f + n} * r * r\n"}
            for f in range(files) for n in range(per_file)]


def test_the_loss_on_target_positions_equals_the_whole_models_loss(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from echo_dagster.training.examples import collate
    from echo_dagster.training.trainer import target_loss

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    encoded = [encode(tokenizer, x["prefix"], x["suffix"], x["target"], "python", context_tokens=32,
                      max_target_tokens=16) for x in _file_examples(2, 3)]
    batch = collate(encoded, tokenizer.pad_token_id)
    with torch.no_grad():
        assert torch.allclose(target_loss(model, batch), model(**batch).loss, atol=1e-5)


def test_validation_holds_out_whole_files():
    from echo_dagster.training.trainer import split_validation

    examples = _file_examples(40, 5)
    train_rows, held_out = split_validation(examples, 0.2, seed=0)
    assert len(train_rows) + len(held_out) == len(examples) and 0 < len(held_out) < len(examples) / 2
    assert not {r["path"] for r in train_rows} & {r["path"] for r in held_out}
    assert split_validation(examples, 0.2, seed=0) == (train_rows, held_out)  # stable
    assert split_validation(examples, 0.0, seed=0) == (examples, [])


def test_a_training_that_makes_the_model_worse_keeps_the_base_weights_and_stops(tmp_path, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from echo_dagster.training.trainer import TrainSettings, train

    settings = TrainSettings(method="full", learning_rate=5.0, max_grad_norm=0.0, warmup_share=0.0, batch_size=4,
                             context_tokens=32, max_target_tokens=16, validation_share=0.3, eval_every=1, patience=2,
                             save_every=1000)
    result = train(str(tiny_model_dir), tmp_path / "m", _file_examples(20, 4), tmp_path / "w", tmp_path / "o",
                   settings)
    assert result.best_step == 0 and result.stopped_early and result.steps == 2
    assert [step for step, _ in result.validation] == [0, 1, 2]
    assert all(loss > result.base_validation_loss for _, loss in result.validation[1:])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tokenizer("def area(r):\n    ", return_tensors="pt")
    with torch.no_grad():
        saved = AutoModelForCausalLM.from_pretrained(tmp_path / "o" / "merged")(**ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(**ids).logits
    assert torch.equal(saved, base)


def test_a_training_that_learns_keeps_its_best_step(tmp_path, tiny_model_dir):
    from echo_dagster.training.trainer import TrainSettings, train

    settings = TrainSettings(lora_r=4, lora_alpha=8, lora_dropout=0.0, learning_rate=3e-3, batch_size=4,
                             context_tokens=32, max_target_tokens=16, validation_share=0.3, eval_every=2,
                             save_every=1000, epochs=3)
    result = train(str(tiny_model_dir), tmp_path / "m", _file_examples(20, 4), tmp_path / "w", tmp_path / "o",
                   settings)
    assert result.best_step > 0 and result.best_validation_loss < result.base_validation_loss
    assert result.best_validation_loss == min(loss for _, loss in result.validation)


def test_a_token_budget_sets_the_steps_the_schedule_and_the_measurements(tmp_path, tiny_model_dir):
    """A budget run asks for many epochs and stops at the budget: its warmup, decay and validation
    measurements are laid out over the steps the budget allows, and its last step is measured."""
    from echo_dagster.training.trainer import TrainSettings, train

    settings = TrainSettings(lora_r=4, lora_alpha=8, lora_dropout=0.0, learning_rate=3e-3, batch_size=4,
                             context_tokens=32, max_target_tokens=16, validation_share=0.3, save_every=1000,
                             epochs=50, max_tokens=2_000)
    result = train(str(tiny_model_dir), tmp_path / "m", _file_examples(20, 4), tmp_path / "w", tmp_path / "o",
                   settings)
    steps = [step for step, _ in result.validation]
    assert 2_000 <= result.tokens < 2_000 + 4 * 48 and result.steps < 50
    assert steps[0] == 0 and steps[-1] == result.steps and len(steps) >= 5
    assert result.best_step > 0 and result.best_validation_loss < result.base_validation_loss


def _pairs(files: int, per_file: int) -> list[dict]:
    return [e | {"rejected": f"return {e['completion_id'][1:].replace('-', '')} + r\n"}
            for e in _file_examples(files, per_file)]


def _margin(model_dir, pairs: list[dict]) -> float:
    """Mean log-probability of the kept code minus that of the rejected proposal."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from echo_dagster.training.preference import collate_pairs, encode_pairs, sequence_logps

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = encode_pairs(tokenizer, pairs, context_tokens=32, max_target_tokens=16)
    with torch.no_grad():
        logps, _ = sequence_logps(AutoModelForCausalLM.from_pretrained(model_dir),
                                  collate_pairs(encoded, tokenizer.pad_token_id))
    return float((logps[: len(encoded)] - logps[len(encoded):]).mean())


def test_a_pairs_log_probabilities_are_the_token_loss_of_each_side(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from echo_dagster.training.examples import collate
    from echo_dagster.training.preference import collate_pairs, encode_pairs, sequence_logps
    from echo_dagster.training.trainer import target_loss

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    pairs = encode_pairs(tokenizer, _pairs(2, 2), context_tokens=32, max_target_tokens=16)
    with torch.no_grad():
        logps, counts = sequence_logps(model, collate_pairs(pairs, tokenizer.pad_token_id))
        for n, pair in enumerate(pairs):
            for side, row in ((pair.chosen, n), (pair.rejected, len(pairs) + n)):
                alone = target_loss(model, collate([side], tokenizer.pad_token_id))
                assert torch.allclose(-logps[row] / counts[row], alone, atol=1e-5)


def test_preference_training_prefers_the_kept_code_to_the_rejected_proposal(tmp_path, tiny_model_dir):
    """DPO on (kept, rejected) pairs from an SFT checkpoint: the held-out DPO loss starts at log 2
    plus the kept code's token loss (the policy is the reference), falls, and the kept code's
    margin over the rejected proposal grows on held-out files too."""
    import math

    from echo_dagster.training.trainer import TrainSettings, split_validation, train

    pairs = _pairs(20, 4)
    settings = TrainSettings(objective="dpo", dpo_sft_weight=0.0, lora_r=4, lora_alpha=8, lora_dropout=0.0,
                             learning_rate=3e-3, batch_size=4, context_tokens=32, max_target_tokens=16,
                             validation_share=0.3, eval_every=2, save_every=1000, epochs=2)
    result = train(str(tiny_model_dir), tmp_path / "m", pairs, tmp_path / "w", tmp_path / "o", settings)
    assert math.isclose(result.base_validation_loss, math.log(2), rel_tol=1e-4)
    assert result.best_step > 0 and result.best_validation_loss < result.base_validation_loss
    held_out = split_validation(pairs, settings.validation_share, settings.seed)[1]
    assert _margin(tmp_path / "o" / "merged", held_out) > _margin(tiny_model_dir, held_out) + 0.1


def test_preference_training_needs_a_lora_and_pairs_that_differ(tmp_path, tiny_model_dir):
    import pytest

    from echo_dagster.training.trainer import TrainSettings, train

    with pytest.raises(ValueError, match="needs method 'lora'"):
        train(str(tiny_model_dir), tmp_path / "m", _pairs(4, 2), tmp_path / "w", tmp_path / "o",
              TrainSettings(objective="dpo", method="full"))
    same = [p | {"rejected": p["target"]} for p in _pairs(4, 2)]
    with pytest.raises(ValueError, match="no preference pair"):
        train(str(tiny_model_dir), tmp_path / "m", same, tmp_path / "w", tmp_path / "o",
              TrainSettings(objective="dpo", context_tokens=32, max_target_tokens=16))
