"""The metrics of DESIGN.md, shared by the simulator, evaluation and reports."""

from __future__ import annotations

from rapidfuzz.distance import Levenshtein

DEFAULT_TAU = 0.8


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein(a, b) / max(len(a), len(b)); 1.0 for two empty strings."""
    if not a and not b:
        return 1.0
    return 1.0 - Levenshtein.distance(a, b) / max(len(a), len(b))


def exact_match(a: str, b: str) -> bool:
    """Equal once trailing white space is stripped from each line."""
    return _rstrip_lines(a) == _rstrip_lines(b)


def _rstrip_lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def first_lines(text: str, k: int) -> str:
    return "\n".join(text.splitlines()[:k])


def simulated_accept(proposal: str, truth: str, tau: float = DEFAULT_TAU) -> bool:
    """A proposal is accepted when it is non-empty and ES(proposal, the first k lines of the truth) >= tau,
    with k the proposal's line count."""
    if not proposal:
        return False
    lines = proposal.splitlines()
    return edit_similarity("\n".join(lines), first_lines(truth, len(lines))) >= tau


def surviving_chars(proposal: str, final: str) -> int:
    """Characters of the proposal that stand unchanged in the final text (Levenshtein alignment)."""
    return sum(
        op.src_end - op.src_start for op in Levenshtein.opcodes(proposal, final) if op.tag == "equal"
    )
