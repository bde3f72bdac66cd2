"""Completions from a causal LM: prompts within a token budget, batched greedy decoding (left
padding, KV cache), stop rules, and a cut at a syntactic boundary.

A trigger in the middle of a line completes that line; a trigger at the start of a line (only
indentation typed) completes a block: lines until the code dedents below the cursor's indentation,
at most `max_lines`.
"""

from __future__ import annotations

from dataclasses import dataclass

from echo_dagster.syntax import indent_of, trim_to_boundary

# FIM token spellings in common code models, (prefix, suffix, middle); prompts are built PSM.
_FIM_SPELLINGS = (
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    ("<|fim_begin|>", "<|fim_hole|>", "<|fim_end|>"),
)


@dataclass(frozen=True)
class CompletionRequest:
    prefix: str
    suffix: str = ""
    language: str = "python"


@dataclass(frozen=True)
class GenerationConfig:
    context_tokens: int = 192  # prompt budget; with FIM, a quarter goes to the suffix
    max_new_tokens: int = 32
    max_lines: int = 4
    batch_size: int = 16


def fim_token_ids(tokenizer) -> tuple[int, int, int] | None:
    vocab = tokenizer.get_vocab()
    for spelling in _FIM_SPELLINGS:
        if all(token in vocab for token in spelling):
            return tuple(vocab[token] for token in spelling)
    return None


def is_mid_line(prefix: str) -> bool:
    return bool(prefix.rpartition("\n")[2].strip())


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
             *, progress: bool = False) -> list[str]:
    """One proposal per request, in order; greedy, so the same inputs give the same outputs."""
    import torch
    from tqdm import tqdm

    model, tokenizer = loaded.model, loaded.tokenizer
    prompts = [prompt_ids(tokenizer, r, config.context_tokens) for r in requests]
    order = sorted(range(len(requests)), key=lambda i: len(prompts[i]))  # similar lengths, less padding
    results: list[str] = [""] * len(requests)
    batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    for batch in tqdm(batches, desc="completions", unit="batch", disable=not progress):
        width = max(len(prompts[i]) for i in batch)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(prompts[i])) + prompts[i] for i in batch])
        attention = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in batch])
        stop = _StopRules(tokenizer, [requests[i] for i in batch], width, config.max_lines)
        with torch.inference_mode():
            output = model.generate(
                input_ids=input_ids, attention_mask=attention, do_sample=False, max_new_tokens=config.max_new_tokens,
                stopping_criteria=[stop], pad_token_id=pad, use_cache=True,
            )
        texts = tokenizer.batch_decode(output[:, width:], skip_special_tokens=True)
        for i, text in zip(batch, texts):
            results[i] = postprocess(requests[i], text, config.max_lines)
    return results


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
        return torch.tensor([_finished(r, t, self.max_lines) for r, t in zip(self.requests, texts)])


def _finished(request: CompletionRequest, text: str, max_lines: int) -> bool:
    if is_mid_line(request.prefix):
        return "\n" in text
    lines = text.split("\n")
    complete_lines = lines[:-1]
    if len(complete_lines) >= max_lines:
        return True
    indent = indent_of(request.prefix.rpartition("\n")[2])
    return any(line.strip() and indent_of(line) < indent for line in complete_lines[1:])


def postprocess(request: CompletionRequest, text: str, max_lines: int, tree=None) -> str:
    """The proposal to insert at the cursor: one line for a mid-line trigger, else the block's
    lines up to a dedent, cut at a syntactic boundary. `tree`: see `trim_to_boundary`."""
    if is_mid_line(request.prefix):
        return text.split("\n", 1)[0].rstrip()
    typed = request.prefix.rpartition("\n")[2]
    indent = indent_of(typed)
    parts = text.split("\n")
    terminated = len(parts) > 1
    lines = parts[:-1] if terminated else parts  # a last line without its newline was cut short
    while lines and not lines[0].strip():
        lines = lines[1:]  # a proposal does not open with blank lines
    kept = []
    for n, line in enumerate(lines[:max_lines]):
        if n and line.strip() and indent_of(line) < indent:
            break
        kept.append(line.rstrip())
    while kept and not kept[-1].strip():
        kept.pop()
    if not kept:
        return ""
    kept[0] = kept[0][len(typed):] if kept[0].startswith(typed) else kept[0].lstrip()
    proposal = "\n".join(kept) + ("\n" if terminated else "")
    return trim_to_boundary(request.prefix, proposal, request.language, tree=tree)

