"""The metrics shared by the simulator, evaluation and reports (docs/design.md#the-judge).

Simulated acceptance compares a proposal with only as many lines of the truth as it has (the
paper's rule, and how the simulated developers decide), so a proposal that stops after a right
first line of a four-line truth is accepted: acceptance alone rewards proposing less. What the gate
decides on is `kept_chars` — characters of the proposal that stand in the kept code up to their
first difference, of its longest run of first lines a developer would accept (Copilot's
accepted-and-retained characters, with accept-line), so that cutting a proposal never keeps more —
beside measures against the whole truth (exact match, edit similarity, line precision and recall).
"""

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


def matching_chars(text: str, truth: str) -> int:
    """Characters of `text` equal to the truth's, from the start up to their first difference."""
    n = 0
    for a, b in zip(text, truth):
        if a != b:
            break
        n += 1
    return n


def kept_chars(proposal: str, truth: str, tau: float = DEFAULT_TAU) -> int:
    """Characters a developer keeps of a proposal taken line by line (as accept-line does): of the
    longest run of its first lines that `simulated_accept` accepts, the characters matching the
    truth up to their first difference; 0 when not even its first line would be accepted.

    Wrong lines after right ones cost the proposal nothing here (acceptance, which the gate keeps
    non-inferior, counts the whole), and a copy cut to fewer lines can only keep as much or less."""
    lines = proposal.splitlines(keepends=True)
    for k in range(len(lines), 0, -1):
        head = "".join(lines[:k])
        if simulated_accept(head, truth, tau):
            return matching_chars(head, truth)
    return 0


def line_matches(proposal: str, truth: str) -> tuple[int, int, int]:
    """(lines of the proposal equal to the truth's line at the same place, trailing white space
    aside; the proposal's lines; the truth's lines): line precision is the first over the second,
    recall the first over the third."""
    mine, theirs = _rstrip_lines(proposal), _rstrip_lines(truth)
    return sum(a == b for a, b in zip(mine, theirs)), len(mine), len(theirs)
