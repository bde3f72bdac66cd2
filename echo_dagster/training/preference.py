"""Preference training on what users did with a proposal: DPO on pairs of (the code they kept, the
proposal they rejected or rewrote), after supervised fine-tuning — as JetBrains' Mellum and Zed's
Zeta train on user feedback.

The policy is a LoRA adapter on the SFT checkpoint; the reference is that checkpoint itself (the
adapter switched off), so no second model is held. The loss is DPO's (Rafailov et al., 2023) plus
the kept code's token loss, weighted (as RPO, Pang et al., 2024, does): DPO alone can lower the
likelihood of both answers as long as their margin grows, which a completion model that must still
write the kept code cannot afford.
"""

from __future__ import annotations

from dataclasses import dataclass

from echo_dagster.training.examples import Encoded, collate, encode, target_logits


@dataclass(frozen=True)
class Pair:
    chosen: Encoded  # the prompt, then the code the user kept
    rejected: Encoded  # the same prompt, then the proposal they rejected or rewrote

    def __len__(self) -> int:
        return len(self.chosen) + len(self.rejected)


def encode_pairs(tokenizer, rows: list[dict], *, context_tokens: int, max_target_tokens: int) -> list[Pair]:
    """Rows (prefix, suffix, target — the kept code —, rejected, language) encoded; a pair whose two
    answers encode the same, or either to nothing, teaches no preference and is left out."""
    pairs = []
    for r in rows:
        sides = [encode(tokenizer, r["prefix"], r["suffix"], text, r["language"] or "", context_tokens=context_tokens,
                        max_target_tokens=max_target_tokens) for text in (r["target"], r["rejected"])]
        if all(sides) and sides[0].input_ids != sides[1].input_ids:
            pairs.append(Pair(*sides))
    return pairs


def collate_pairs(batch: list[Pair], pad_id: int):
    """One right-padded batch: the chosen sequences, then the rejected ones (one forward for both)."""
    return collate([p.chosen for p in batch] + [p.rejected for p in batch], pad_id)


def sequence_logps(model, batch: dict):
    """(sum of the target tokens' log-probabilities, their count), a row each."""
    import torch

    logits, targets, taken = target_logits(model, batch)
    token_logps = torch.log_softmax(logits, dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1)
    sums = torch.zeros(taken.shape[0], dtype=token_logps.dtype, device=token_logps.device)
    return sums.index_add(0, taken.nonzero()[:, 0], token_logps), taken.sum(dim=1)


def dpo_loss(model, batch: dict, beta: float, sft_weight: float):
    """DPO's loss on a collate_pairs batch, plus `sft_weight` × the kept code's mean token loss."""
    import torch

    policy, counts = sequence_logps(model, batch)
    with torch.no_grad(), model.disable_adapter():
        reference, _ = sequence_logps(model, batch)
    half = policy.shape[0] // 2
    margin = (policy[:half] - reference[:half]) - (policy[half:] - reference[half:])
    loss = -torch.nn.functional.logsigmoid(beta * margin).mean()
    if sft_weight:
        loss = loss - sft_weight * policy[:half].sum() / counts[:half].sum()
    return loss
