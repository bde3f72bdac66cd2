"""From one session's events to training targets: what the user finally kept at each completion.

For every completion shown: its decision; the final state — the last save or close snapshot after
the decision, else the last snapshot; the cursor carried through every snapshot in between (left
and right of it, so that what the user inserted there lies between the two); and that region cut
to a syntactic unit by the rule that cuts proposals (`completion.postprocess`, at most
`completion.MAX_LINES` lines, however long the proposal shown was). The example
is (prefix', suffix', target) taken from the final document: the row holds the document and where
the target starts in it (`split_document`). A completion with no usable final
state keeps a row with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from echo_dagster.completion import MAX_LINES, CompletionRequest, postprocess
from echo_dagster.harvest.align import AlignmentTooCostly, Diff
from echo_dagster.metrics import edit_similarity, surviving_chars
from echo_dagster.syntax import parse

# Reasons a completion yields no target (refined_targets.reason).
REASONS = ("no_decision", "no_final_snapshot", "session_abandoned", "document_replaced", "region_deleted",
           "empty_target", "target_not_in_document", "alignment_too_costly", "session_too_large")
MIN_UNCHANGED_SHARE = 0.2  # below it, a new version replaced the document rather than edited it


@dataclass(frozen=True)
class RefineSettings:
    max_lines: int = MAX_LINES  # a target's, as a proposal's: the block rule's cap
    # Bounds for pathological sessions: beyond them a completion gets a reason, not a crash.
    max_session_bytes: int = 256 * 1024 * 1024  # a session's documents held at once
    max_changed_chars: int = 100_000  # between two consecutive versions, around a cursor
    # Faster than anyone types (80 words a minute is under 7 characters a second): text that grew
    # faster than this, beyond an accepted proposal, was pasted.
    typing_chars_per_s: float = 10.0


def refine_session(events: list[dict], settings: RefineSettings = RefineSettings(), *,
                   too_large: bool = False) -> list[dict]:
    """`events`: one session's rows of raw_sessions in session order. One row per completion shown.
    `too_large`: the caller dropped the session's documents, which exceeded max_session_bytes."""
    shown = [e for e in events if e["event"] == "completion_shown"]
    if too_large:
        return [{**_base_row(s), "reason": "session_too_large"} for s in shown]
    decisions = {e["completion_id"]: e for e in events if e["event"] in ("completion_accepted", "completion_rejected")}
    snapshots = [e for e in events if e["event"] == "document_snapshot"]
    closed = any(e["event"] == "document_closed" or e.get("trigger") == "close" for e in events)
    chain = _Chain(snapshots, settings.max_changed_chars)
    return [_refine(s, decisions.get(s["completion_id"]), chain, closed, settings) for s in shown]


class _Chain:
    """The session's snapshots and the diffs between consecutive ones, each computed once."""

    def __init__(self, snapshots: list[dict], max_changed_chars: int):
        self.snapshots = snapshots
        self.max_changed_chars = max_changed_chars
        self._diffs: dict[int, Diff] = {}
        self._trees: dict[int, object] = {}

    def diff(self, i: int) -> Diff:  # snapshot i -> i + 1
        if i not in self._diffs:
            self._diffs[i] = Diff(self.snapshots[i]["document"], self.snapshots[i + 1]["document"],
                                  self.max_changed_chars)
        return self._diffs[i]

    def tree(self, i: int, language: str):
        """Snapshot i parsed, for trimming: the completions of a session share their final document."""
        if i not in self._trees:
            self._trees[i] = parse(self.snapshots[i]["document"].encode(), language)
        return self._trees[i]

    def first_after(self, ts: datetime) -> int | None:
        return next((i for i, s in enumerate(self.snapshots) if s["ts"] >= ts), None)

    def final_from(self, start: int) -> int:
        saved = [i for i in range(start, len(self.snapshots)) if self.snapshots[i]["trigger"] in ("save", "close")]
        return saved[-1] if saved else len(self.snapshots) - 1


def _base_row(shown: dict) -> dict:
    return {
        "completion_id": shown["completion_id"], "session_id": shown["session_id"], "user_id": shown["user_id"],
        "tenant_id": shown["tenant_id"], "repo": shown["repo"], "path": shown["path"],
        "language": shown["language"], "model": shown["model"], "shown_ts": shown["ts"],
        "proposal": shown["proposal"], "decision": None, "accepted_text": None, "source_kind": None,
        "document": None, "target_start": None, "region_end": None, "target": None, "es": None, "survived": None,
        "reason": None,
        "pasted_share": None,
    }


def _refine(shown: dict, decision: dict | None, chain: _Chain, closed: bool, settings: RefineSettings) -> dict:
    row = _base_row(shown)
    if decision is None:
        return {**row, "reason": "no_decision"}
    accepted = decision["event"] == "completion_accepted"
    row["decision"] = "accepted" if accepted else "rejected"
    row["accepted_text"] = decision["accepted_text"] if accepted else None
    first = chain.first_after(decision["ts"])
    if first is None:
        return {**row, "reason": "no_final_snapshot"}
    if not closed:
        return {**row, "reason": "session_abandoned"}
    final = chain.final_from(first)
    cursor = len(shown["prefix"])
    entry = Diff(shown["prefix"] + shown["suffix"], chain.snapshots[first]["document"], settings.max_changed_chars)
    snapshots = chain.snapshots
    steps = [(entry, snapshots[first]["ts"] - shown["ts"], len(row["accepted_text"] or ""))]
    steps += [(chain.diff(i), snapshots[i + 1]["ts"] - snapshots[i]["ts"], 0) for i in range(first, final)]
    left = right = cursor
    growth = []  # per step: the region's length before and after it, and what grew faster than typing
    for step, elapsed, instant in steps:
        if step.unchanged_share < MIN_UNCHANGED_SHARE:
            return {**row, "reason": "document_replaced"}
        try:
            before = right - left
            left, right = step.map(left, right=False), step.map(right, right=True)
        except AlignmentTooCostly:
            return {**row, "reason": "alignment_too_costly"}
        typed = elapsed.total_seconds() * settings.typing_chars_per_s + instant
        growth.append((before, right - left, max(0.0, right - left - before - typed)))
    document = chain.snapshots[final]["document"]
    region = document[left:right]
    if not region.strip():
        return {**row, "reason": "region_deleted"}
    request = CompletionRequest(document[:left], document[right:], shown["language"] or "")
    # The block rule, capped, whatever the proposal shown was: a truth that does not depend on the
    # model that served it (docs/design.md#the-judge).
    target = postprocess(request, region, settings.max_lines, chain.tree(final, request.language))
    if not target.strip():
        return {**row, "reason": "empty_target"}
    # The rule may drop the region's leading blank lines or indentation: the target starts where its
    # text does, so that prefix' + target + suffix' is the document (and no suffix repeats the truth).
    start = document.find(target, left, right)
    if start < 0:  # trailing white space stripped inside it: the text is not the document's
        return {**row, "reason": "target_not_in_document"}
    left = start
    row |= {"document": document, "target_start": left, "region_end": right, "target": target,
            "es": edit_similarity(shown["proposal"], target), "pasted_share": _pasted_share(growth, len(target))}
    if accepted:
        text = decision["accepted_text"]
        row["survived"] = surviving_chars(text, target) / len(text) if text else 0.0
        row["source_kind"] = ("partially_accepted" if text != shown["proposal"]
                              else "accepted_unchanged" if text.rstrip() == target.rstrip() else "accepted_edited")
    else:
        row["source_kind"] = "rejected_rewritten"
    return row


def _pasted_share(growth: list[tuple[int, int, float]], target_chars: int) -> float:
    """The share of the target that came faster than typing. Snapshots do not tell in which order
    an interval's text came, so the target's part of what an interval added counts as fast in the
    proportion that all of it was."""
    pasted = 0.0
    for before, after, fast in growth:
        if after > before:
            pasted += max(0, min(after, target_chars) - before) * fast / (after - before)
    return min(1.0, pasted / target_chars) if target_chars else 0.0


def split_document(row: dict) -> tuple[str, str]:
    """(prefix', suffix') of a refined row: the final document before and after the target."""
    start = row["target_start"]
    return row["document"][:start], row["document"][start + len(row["target"]) :]
