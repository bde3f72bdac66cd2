"""Carry positions in a document through its later versions.

Consecutive snapshots differ in a small region, so the common prefix and suffix are found at C
speed (rapidfuzz's Prefix and Postfix) and only the changed middle is aligned (rapidfuzz's
Levenshtein opcodes, computed once per pair of versions): whole-document alignment would cost O(n·m).
"""

from __future__ import annotations

from functools import cached_property

from rapidfuzz.distance import Levenshtein, Postfix, Prefix


class AlignmentTooCostly(ValueError):
    pass


class Diff:
    """From one version of a document to the next. Aligning a changed middle costs its length
    squared (bit-parallel, /64): past `max_changed_chars` a position inside it is not mapped."""

    def __init__(self, old: str, new: str, max_changed_chars: int = 100_000):
        self.old, self.new = old, new
        self.max_changed_chars = max_changed_chars
        self.prefix = Prefix.similarity(old, new)
        self.suffix = min(Postfix.similarity(old, new), min(len(old), len(new)) - self.prefix)

    @property
    def unchanged_share(self) -> float:
        """How much of the longer version the two share at their start and end."""
        longest = max(len(self.old), len(self.new))
        return (self.prefix + self.suffix) / longest if longest else 1.0

    @cached_property
    def _opcodes(self):
        p, s = self.prefix, self.suffix
        changed = len(self.old) + len(self.new) - 2 * (p + s)
        if changed > self.max_changed_chars:
            raise AlignmentTooCostly(f"{changed} changed characters between two versions")
        return Levenshtein.opcodes(self.old[p : len(self.old) - s], self.new[p : len(self.new) - s])

    def map(self, pos: int, *, right: bool) -> int:
        """Where `pos` of the old version lies in the new one. Text inserted exactly at `pos` ends up
        after the position (`right=False`) or before it (`right=True`); a deleted or replaced span
        maps to its edge on the same side."""
        p, old_end = self.prefix, len(self.old) - self.suffix
        if pos < p or (pos == p and not right):
            return pos
        if pos > old_end or (pos == old_end and right):
            return pos + len(self.new) - len(self.old)
        rel = pos - p
        for op in self._opcodes:
            if op.tag == "equal" and op.src_start <= rel < op.src_end:
                return p + op.dest_start + rel - op.src_start
            if op.tag == "insert" and op.src_start == rel and not right:
                return p + op.dest_start
            if op.tag in ("replace", "delete") and op.src_start <= rel < op.src_end:
                return p + (op.dest_end if right else op.dest_start)
        return len(self.new) - self.suffix
