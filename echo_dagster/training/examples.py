"""Training examples as the model sees them: the prompt generation builds, then the target, with the
loss on the target's tokens only.

The prompt is `model.generation.prompt_ids` — the same window of prefix (and suffix, with FIM) the
model gets when it proposes — so training teaches exactly the step it serves. At a line start the
prompt leaves the typed indentation out and the model writes it; the target then starts with it.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from echo_dagster.completion import CompletionRequest, is_mid_line
from echo_dagster.model.generation import prompt_ids

IGNORE = -100  # labels the loss skips


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(tokenizer, prefix: str, suffix: str, target: str, language: str, *, context_tokens: int,
           max_target_tokens: int) -> Encoded | None:
    """None when the target holds no token (nothing to learn)."""
    prompt = prompt_ids(tokenizer, CompletionRequest(prefix, suffix, language), context_tokens)
    typed = "" if is_mid_line(prefix) else prefix.rpartition("\n")[2]
    target_ids = tokenizer(typed + target, add_special_tokens=False)["input_ids"][:max_target_tokens]
    if not target_ids:
        return None
    if len(target_ids) < max_target_tokens and tokenizer.eos_token_id is not None:
        target_ids.append(tokenizer.eos_token_id)  # the whole target fit: learn to stop after it
    return Encoded(prompt + target_ids, [IGNORE] * len(prompt) + target_ids)


def encode_rows(tokenizer, rows: list[dict], *, context_tokens: int, max_target_tokens: int) -> list[Encoded]:
    """Example rows (prefix, suffix, target, language) encoded; those without a target token left out."""
    encoded = (encode(tokenizer, r["prefix"], r["suffix"], r["target"], r["language"] or "",
                      context_tokens=context_tokens, max_target_tokens=max_target_tokens) for r in rows)
    return [e for e in encoded if e]


def batches(examples: list, batch_size: int, seed: int, by_length: bool = True) -> list[list]:
    """Batches of examples (Encoded, or preference.Pair: anything with a length) in a seeded random
    order; `by_length`: of similar lengths (less padding) — buckets of
    16 batches are sorted by length, cut into batches, and the batches shuffled."""
    rng = random.Random(seed)
    order = examples[:]
    rng.shuffle(order)
    out = []
    bucket = batch_size * 16 if by_length else batch_size
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start : start + bucket], key=len) if by_length else \
            order[start : start + bucket]
        out += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(out)
    return out


def collate(batch: list[Encoded], pad_id: int):
    """Right-padded tensors: input_ids, attention_mask, labels."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = [e.input_ids + [pad_id] * (width - len(e.input_ids)) for e in batch]
    mask = [[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in batch]
    labels = [e.labels + [IGNORE] * (width - len(e.labels)) for e in batch]
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}


def target_logits(model, batch: dict):
    """(the logits at the positions that predict a target token, those tokens, the mask of those
    positions over `labels[:, 1:]`): hidden states for every position come from the model's body,
    the vocabulary projection only where a loss is taken."""
    body = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = body.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    labels = batch["labels"][:, 1:]
    taken = labels != IGNORE
    return body.lm_head(hidden[:, :-1][taken]).float(), labels[taken], taken


def data_hash(rows: list[tuple]) -> str:
    """A hash of what a model is trained on, in a stable order."""
    digest = hashlib.sha256()
    for row in sorted(rows):
        digest.update(repr(row).encode())
    return digest.hexdigest()
