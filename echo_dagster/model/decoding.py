"""Greedy decoding with continuous batching over a Hugging Face causal LM.

HF `generate` decodes a batch until its longest row stops: with proposals of 15 tokens on average
and 30 at most, half its decoding steps run for rows that are already done, and every step copies
the whole KV cache (`DynamicCache` grows by `torch.cat`). Here the batch is a fixed set of slots
whose keys and values live in preallocated buffers; a slot whose row stopped is refilled with a
waiting prompt between steps, so the steps stay full until the queue runs dry, and the batch then
shrinks to the rows still decoding.

Every slot writes its step at the same column of the buffers. A new prompt is prefilled on its own
(its rows left-padded among themselves) and copied into its slot so that it ends at that column;
the columns before it are masked for that slot, and each slot carries its own position ids, so
a row's keys see exactly its own prompt and tokens, as in `generate`. When the columns run out, the
prefix that no slot still reads is dropped.

Greedy outputs equal `generate`'s token for token, up to floating-point ties: the same arithmetic
in other batch shapes can round differently (`benchmarks/generation.py` counts identical proposals).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass
class DecodeStats:
    """Where a `greedy_decode` call spent its time, for the benchmark's fraction of the bound."""

    prefill_tokens: int = 0  # prompt tokens read, padding left out
    prefill_seconds: float = 0.0
    steps: int = 0  # forward passes of one token a row
    step_rows: int = 0  # rows those passes decoded, finished slots included
    step_seconds: float = 0.0


@dataclass
class _Row:
    index: int  # into the caller's prompts
    generated: list[int]


class _SlotCache:
    """Keys and values of every slot, for every layer, in buffers of `capacity` columns; a forward
    pass writes its tokens at columns `end, end + q` of every slot (the model calls `update` once a
    layer) and `advance` moves `end` past them afterwards."""

    def __init__(self, layers: int, slots: int, heads: int, capacity: int, head_dim: int, dtype, device):
        import torch

        shape = (slots, heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.end = 0

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    def update(self, key, value, layer_idx: int, **kwargs):
        q = key.shape[2]
        self.keys[layer_idx][:, :, self.end : self.end + q] = key
        self.values[layer_idx][:, :, self.end : self.end + q] = value
        return self.keys[layer_idx][:, :, : self.end + q], self.values[layer_idx][:, :, : self.end + q]

    def advance(self, q: int) -> None:
        self.end += q

    def place(self, slot: int, keys: Sequence, values: Sequence) -> None:
        """Copies one prompt's keys and values (each layer's [heads, length, head_dim]) to end at `end`."""
        length = keys[0].shape[1]
        for layer, (k, v) in enumerate(zip(keys, values)):
            self.keys[layer][slot, :, self.end - length : self.end] = k
            self.values[layer][slot, :, self.end - length : self.end] = v

    def drop_prefix(self, columns: int) -> None:
        for buffers in (self.keys, self.values):
            for buffer in buffers:
                buffer[:, :, : self.end - columns] = buffer[:, :, columns : self.end].clone()
        self.end -= columns

    def keep_slots(self, slots) -> None:
        self.keys = [k.index_select(0, slots) for k in self.keys]
        self.values = [v.index_select(0, slots) for v in self.values]


def greedy_decode(model, prompts: Sequence[Sequence[int]], done: Callable[[int, list[int]], bool], *,
                  max_new_tokens: int, slots: int = 32, pad_token_id: int = 0,
                  eos_token_ids: Sequence[int] = (), row_done: Callable[[], None] = lambda: None,
                  stats: DecodeStats | None = None) -> list[list[int]]:
    """The greedy continuation of each prompt, in order, without its end-of-sequence token: each row
    stops at an end-of-sequence token, at `max_new_tokens`, or once `done(index, generated)` holds
    (called after every token, with the row's index into `prompts`). `row_done` is called as each
    row finishes; `stats`, where given, adds up this call's work."""
    import time

    import torch

    device = model.device
    config = model.config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    longest = max((len(p) for p in prompts), default=0)
    slots = max(1, min(slots, len(prompts)))
    span = longest + max_new_tokens  # the most columns one row can occupy
    cache = _SlotCache(config.num_hidden_layers, slots, heads, 2 * span + 64, head_dim, model.dtype, device)
    cache.end = longest  # every prompt fits before the first write column
    valid = torch.zeros((slots, cache.capacity), dtype=torch.bool, device=device)
    positions = torch.zeros(slots, dtype=torch.long, device=device)
    last = torch.full((slots,), pad_token_id, dtype=torch.long, device=device)
    rows: list[_Row | None] = [None] * slots
    results: list[list[int]] = [[] for _ in prompts]
    # Shortest first, as `complete` batched them: a prefill of similar lengths pads little.
    waiting = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    eos = set(eos_token_ids)
    stats = stats or DecodeStats()

    def finished(row: _Row, token: int) -> bool:
        if token in eos:
            return True
        row.generated.append(token)
        return len(row.generated) >= max_new_tokens or done(row.index, row.generated)

    def refill(free: list[int]) -> None:
        taken = [waiting.pop() for _ in range(min(len(free), len(waiting)))]
        if not taken:
            return
        started = time.perf_counter()
        keys, values, first = _prefill(model, [prompts[i] for i in taken], pad_token_id)
        stats.prefill_seconds += time.perf_counter() - started
        stats.prefill_tokens += sum(len(prompts[i]) for i in taken)
        for j, index in enumerate(taken):
            row = _Row(index, [])
            if finished(row, first[j]):  # its first token ends it: the slot stays free
                results[index] = row.generated
                row_done()
                continue
            slot = free.pop(0)
            length = len(prompts[index])
            cache.place(slot, [k[j, :, -length:] for k in keys], [v[j, :, -length:] for v in values])
            valid[slot] = False
            valid[slot, cache.end - length : cache.end] = True
            positions[slot] = length
            last[slot] = first[j]
            rows[slot] = row

    while True:
        free = [s for s, row in enumerate(rows) if row is None]
        if waiting and (len(free) >= max(1, len(rows) // 8) or len(free) == len(rows)):
            refill(free)
        active = [s for s, row in enumerate(rows) if row is not None]
        if not active:
            if waiting:
                continue
            break
        if not waiting and len(active) <= len(rows) // 2:
            # The queue is dry: decode only the rows still going.
            kept = torch.tensor(active, device=device)
            cache.keep_slots(kept)
            valid, positions, last = valid[kept], positions[kept], last[kept]
            rows = [rows[s] for s in active]
            active = list(range(len(rows)))
        if cache.end + 1 > cache.capacity:
            in_use = valid[torch.tensor(active, device=device), : cache.end].any(dim=0)
            unread = int(in_use.int().argmax())  # the first column an active row still reads
            drop = min(unread, cache.end - longest)
            cache.drop_prefix(drop)
            valid[:, : cache.end] = valid[:, drop : drop + cache.end].clone()
            valid[:, cache.end :] = False
        # Each slot reads its own columns and the one it writes now.
        valid[:, cache.end] = True
        mask = valid[:, None, None, : cache.end + 1]
        started = time.perf_counter()
        with torch.inference_mode():
            logits = model(input_ids=last[:, None], position_ids=positions[:, None], attention_mask=mask,
                           cache=cache, use_cache=True, logits_to_keep=1).logits
        cache.advance(1)
        tokens = logits[:, -1].argmax(dim=-1)
        positions += 1
        last = tokens
        chosen = tokens.tolist()  # waits for the step to finish
        stats.steps += 1
        stats.step_rows += len(rows)
        stats.step_seconds += time.perf_counter() - started
        for slot, token in enumerate(chosen):
            row = rows[slot]
            if row is not None and finished(row, token):
                results[row.index] = row.generated
                row_done()
                rows[slot] = None
                valid[slot] = False
    return results


def _prefill(model, prompts: Sequence[Sequence[int]], pad_token_id: int):
    """Each layer's keys and values of `prompts` (left-padded to the longest, [rows, heads, width,
    head_dim]) and each prompt's first greedy token."""
    import torch
    from transformers import DynamicCache

    ids, mask = left_padded(prompts, pad_token_id, model.device)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, cache=cache,
                       use_cache=True, logits_to_keep=1).logits
    keys = [layer.keys for layer in cache.layers]
    values = [layer.values for layer in cache.layers]
    return keys, values, logits[:, -1].argmax(dim=-1).tolist()


def left_padded(prompts: Sequence[Sequence[int]], pad_token_id: int, device):
    """`prompts` as one batch, padded on the left to the longest: (input ids, attention mask)."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_token_id] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    return ids, mask
