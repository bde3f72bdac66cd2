"""Continuous batching (model.decoding) against HF `generate`, the reference: the same greedy tokens
whatever the slots, refills, prefix drops and stops."""

import random

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import echo_dagster.model.decoding as decoding
from echo_dagster.completion import CompletionRequest
from echo_dagster.model.decoding import greedy_decode
from echo_dagster.model.generation import GenerationConfig, complete
from echo_dagster.model.loading import load_model

EOS = 299


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=EOS, pad_token_id=0)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def prompts():
    rng = random.Random(0)
    # EOS inside prompts too: a row must stop at the tokens it writes, not at those it reads.
    return [[rng.randrange(1, 300) for _ in range(rng.randrange(1, 30))] for _ in range(40)]


def reference(model, prompt: list[int], max_new_tokens: int, eos: list[int] = [EOS]) -> list[int]:
    output = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                            do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=0, eos_token_id=eos)
    generated = output[0, len(prompt) :].tolist()
    return generated[: next((i for i, t in enumerate(generated) if t in eos), len(generated))]


@pytest.mark.parametrize("slots", [1, 4, 32])
def test_rows_stopped_by_the_caller_equal_generate(model, prompts, slots):
    def length(index):
        return index % 7 + 1

    out = greedy_decode(model, prompts, lambda index, generated: len(generated) >= length(index),
                        max_new_tokens=16, slots=slots, eos_token_ids=[EOS])
    assert out == [reference(model, p, length(i)) for i, p in enumerate(prompts)]


def test_long_runs_drop_the_prefix_no_slot_reads_and_stay_equal(model, prompts, monkeypatch):
    drops = []
    drop_prefix = decoding._SlotCache.drop_prefix
    monkeypatch.setattr(decoding._SlotCache, "drop_prefix", lambda cache, n: (drops.append(n), drop_prefix(cache, n)))
    out = greedy_decode(model, prompts, lambda index, generated: False, max_new_tokens=16, slots=4,
                        eos_token_ids=[EOS])
    assert drops, "40 rows of 16 tokens through 4 slots outrun the buffers' columns"
    assert out == [reference(model, p, 16) for p in prompts]


def test_a_row_whose_first_token_ends_it_frees_its_slot(model, prompts):
    eos = sorted({reference(model, p, 1)[0] for p in prompts[:3]})
    out = greedy_decode(model, prompts, lambda index, generated: False, max_new_tokens=4, slots=3, eos_token_ids=eos)
    assert out == [reference(model, p, 4, eos) for p in prompts]
    assert sum(tokens == [] for tokens in out) >= 3


def test_proposals_equal_the_generate_reference(tiny_model_dir, tmp_path):
    tiny = load_model(str(tiny_model_dir), tmp_path)
    requests = [CompletionRequest(f"def f{n}(x):\n" + "    " * (n % 2) + "return x" * (n % 3), "")
                for n in range(11)]
    fast = complete(tiny, requests, GenerationConfig(batch_size=4, max_new_tokens=12))
    assert fast == complete(tiny, requests, GenerationConfig(batch_size=4, max_new_tokens=12, decoder="generate"))
    assert any(fast)
