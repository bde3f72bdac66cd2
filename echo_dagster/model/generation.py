"""Completions from a causal LM: prompts within a token budget, greedy decoding in continuous
batches (`model.decoding`; HF `generate` as the reference), stopped and cut by `completion`'s rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from echo_dagster.completion import MAX_LINES, CompletionRequest, is_mid_line, is_whole, postprocess
from echo_dagster.model.loading import load_model

# FIM token spellings in common code models, (prefix, suffix, middle); prompts are built PSM.
_FIM_SPELLINGS = (
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    ("<|fim_begin|>", "<|fim_hole|>", "<|fim_end|>"),
)


@dataclass(frozen=True)
class GenerationConfig:
    context_tokens: int = 192  # prompt budget; with FIM, a quarter goes to the suffix
    max_new_tokens: int = 32
    max_lines: int = MAX_LINES
    # Decoding a step costs about the same for 16 rows or 32 (it is overhead-bound on a CPU), so a
    # larger batch spreads it over more proposals; prompts are sorted by length, so padding stays small.
    batch_size: int = 32
    precision: str = "auto"  # of the weights when the model is loaded for generation (model.loading)
    device: str = "auto"  # cuda where there is one, else cpu
    # "continuous": model.decoding's continuous batching; "generate": HF `generate` on fixed batches,
    # the reference it is tested and benchmarked against.
    decoder: str = "continuous"


def fim_token_ids(tokenizer) -> tuple[int, int, int] | None:
    vocab = tokenizer.get_vocab()
    for spelling in _FIM_SPELLINGS:
        if all(token in vocab for token in spelling):
            return tuple(vocab[token] for token in spelling)
    return None


def prompt_ids(tokenizer, request: CompletionRequest, context_tokens: int) -> list[int]:
    """Token ids of the prompt: the nearest prefix (and suffix, with FIM) within the budget.

    At the start of a line the typed indentation is left out of the prompt (a prompt that ends in
    spaces tokenizes unlike anything in training) and the model writes it."""
    prefix = request.prefix
    if not is_mid_line(prefix):
        prefix = prefix[: len(prefix) - len(prefix.rpartition("\n")[2])]
    fim = fim_token_ids(tokenizer)
    if fim is None:
        # At the top of a file there is nothing to condition on but the start of a document.
        return _tail_ids(tokenizer, prefix, context_tokens) or _document_start(tokenizer)
    suffix_budget = context_tokens // 4
    suffix_ids = _head_ids(tokenizer, request.suffix, suffix_budget)
    prefix_ids = _tail_ids(tokenizer, prefix, context_tokens - len(suffix_ids))
    return [fim[0], *prefix_ids, fim[1], *suffix_ids, fim[2]]


def _document_start(tokenizer) -> list[int]:
    if tokenizer.bos_token_id is not None and tokenizer.bos_token_id != tokenizer.pad_token_id:
        return [tokenizer.bos_token_id]
    return tokenizer("\n", add_special_tokens=False)["input_ids"]


def _tail_ids(tokenizer, text: str, budget: int) -> list[int]:
    # Tokenize only a window of text: ~8 characters a token is ample for code.
    window = text[-budget * 8 :]
    ids = tokenizer(window, add_special_tokens=False)["input_ids"]
    if len(window) < len(text):
        ids = ids[1:]  # the first token may be a piece of a longer one
    return ids[-budget:] if budget > 0 else []


def _head_ids(tokenizer, text: str, budget: int) -> list[int]:
    window = text[: budget * 8]
    ids = tokenizer(window, add_special_tokens=False)["input_ids"]
    if len(window) < len(text):
        ids = ids[:-1]
    return ids[:budget]


def complete(loaded, requests: list[CompletionRequest], config: GenerationConfig = GenerationConfig(),
             *, progress: bool = False, stats=None) -> list[str]:
    """One proposal per request, in order; greedy, so the same inputs give the same outputs.
    `stats`: a `model.decoding.DecodeStats` the continuous decoder adds its work to."""
    from tqdm import tqdm

    tokenizer = loaded.tokenizer
    prompts = [prompt_ids(tokenizer, r, config.context_tokens) for r in requests]
    decode = _generate if config.decoder == "generate" else _continuous
    with tqdm(total=len(requests), desc="completions", unit="proposal", disable=not progress) as bar:
        texts = decode(loaded, requests, prompts, config, bar.update, stats)
    return [postprocess(r, text, config.max_lines) for r, text in zip(requests, texts)]


def _continuous(loaded, requests, prompts, config: GenerationConfig, advance, stats) -> list[str]:
    from echo_dagster.model.decoding import greedy_decode

    model, tokenizer = loaded.model, loaded.tokenizer

    def done(index: int, generated: list[int]) -> bool:
        return is_whole(requests[index], tokenizer.decode(generated, skip_special_tokens=True), config.max_lines)

    eos = model.generation_config.eos_token_id
    outputs = greedy_decode(model, prompts, done, max_new_tokens=config.max_new_tokens, slots=config.batch_size,
                            pad_token_id=tokenizer.pad_token_id,
                            eos_token_ids=eos if isinstance(eos, list) else [eos] if eos is not None else [],
                            row_done=lambda: advance(1), stats=stats)
    return tokenizer.batch_decode(outputs, skip_special_tokens=True)


def _generate(loaded, requests, prompts, config: GenerationConfig, advance, stats=None) -> list[str]:
    """HF `generate` on batches of prompts of similar length: the reference the fast path is held to
    (`stats` stays untouched: `generate` does not say where its time goes)."""
    import torch

    from echo_dagster.model.decoding import left_padded

    model, tokenizer = loaded.model, loaded.tokenizer
    order = sorted(range(len(requests)), key=lambda i: len(prompts[i]))  # similar lengths, less padding
    texts: list[str] = [""] * len(requests)
    for start in range(0, len(order), config.batch_size):
        batch = order[start : start + config.batch_size]
        pad = tokenizer.pad_token_id
        input_ids, attention = left_padded([prompts[i] for i in batch], pad, model.device)
        width = input_ids.shape[1]
        stop = _StopRules(tokenizer, [requests[i] for i in batch], width, config.max_lines)
        with torch.inference_mode():
            output = model.generate(
                input_ids=input_ids, attention_mask=attention, do_sample=False, max_new_tokens=config.max_new_tokens,
                stopping_criteria=[stop], pad_token_id=pad, use_cache=True,
            )
        for i, text in zip(batch, tokenizer.batch_decode(output[:, width:], skip_special_tokens=True)):
            texts[i] = text
        advance(len(batch))
    return texts


def proposer(spec: str, models_dir: str | Path, config: GenerationConfig = GenerationConfig(), *,
             progress: bool = False) -> Callable[[list[CompletionRequest]], list[str]]:
    """`complete` with the model of `spec`, loaded at the first call (a caller that scans its source
    first does not hold the model meanwhile) and kept for the next."""
    loaded = None

    def propose(requests: list[CompletionRequest]) -> list[str]:
        nonlocal loaded
        if loaded is None:
            loaded = load_model(spec, models_dir, device=config.device, precision=config.precision)
        return complete(loaded, requests, config, progress=progress)

    return propose


class _StopRules:
    """Stops each row of a batch as soon as its text holds a whole proposal."""

    def __init__(self, tokenizer, requests: list[CompletionRequest], prompt_width: int, max_lines: int):
        self.tokenizer = tokenizer
        self.requests = requests
        self.width = prompt_width
        self.max_lines = max_lines

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.width :], skip_special_tokens=True)
        return torch.tensor([is_whole(r, t, self.max_lines) for r, t in zip(self.requests, texts)],
                            device=input_ids.device)
