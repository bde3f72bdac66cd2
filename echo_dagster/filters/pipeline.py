"""The filters between refined targets and training data, in a fixed order, each with a reason code.

    opted_out → (no target: the refine reason) → syntax_error → mostly_pii → trivial → too_long →
    rewrite → [eval split: routed to the eval set, splits.py] → duplicate → near_duplicate → eval_overlap

Opt-out comes first so that nothing reads the code of someone who opted out. De-identification
replaces PII and secrets with placeholders in prefix, suffix and target of every row that passes
it. Rows from evaluation-split files (a deterministic hash of repo and path) go to the eval set,
never to training, and no training target may equal or nearly equal an eval target.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field

from datasketch import MinHash, MinHashLSH

from echo_dagster.filters.deidentify import PLACEHOLDERS, scrub
from echo_dagster.splits import file_split
from echo_dagster.syntax import compiles, error_spans

REASONS = ("opted_out", "syntax_error", "mostly_pii", "trivial", "too_long", "rewrite", "duplicate",
           "near_duplicate", "eval_overlap")


@dataclass(frozen=True)
class FilterSettings:
    max_target_chars: int = 2_000
    max_target_lines: int = 8
    rewrite_below_es: float = 0.3  # accepted, yet the kept code shares this little with the proposal
    mostly_pii_share: float = 0.5  # of the target's characters, after de-identification
    near_duplicate_jaccard: float = 0.85
    context_chars: int = 200  # of the prefix's tail, in the dedup key
    # The context a training example keeps around its target (a prompt takes a few hundred tokens).
    prefix_window_chars: int = 4_000
    suffix_window_chars: int = 2_000
    ner: bool = True


@dataclass
class FilterState:
    """What earlier partitions contribute: their dedup keys and targets, and the eval targets."""

    opted_out_users: frozenset = frozenset()
    opted_out_tenants: frozenset = frozenset()
    seen_keys: set = field(default_factory=set)
    seen: MinHashLSH | None = None
    eval_keys: set = field(default_factory=set)
    eval_targets: MinHashLSH | None = None
    settings: FilterSettings = FilterSettings()
    pii_found: Counter = field(default_factory=Counter)

    def __post_init__(self):
        threshold = self.settings.near_duplicate_jaccard
        self.seen = self.seen or MinHashLSH(threshold=threshold, num_perm=64)
        self.eval_targets = self.eval_targets or MinHashLSH(threshold=threshold, num_perm=64)

    def remember(self, key: str, target: str, split: str, signature: MinHash | None = None) -> None:
        """A kept row, that later rows are compared with."""
        if split == "eval":
            self.eval_keys.add(_normalized(target))
        else:
            self.seen_keys.add(key)
        lsh = self.eval_targets if split == "eval" else self.seen
        if key not in lsh:
            lsh.insert(key, signature or minhash(target))


def filter_row(row: dict, state: FilterState) -> dict:
    """The row with `split` (train or eval), `drop_reason` (None when kept), de-identified text and
    its `dedup_key`."""
    s = state.settings
    out = {**row, "split": file_split(row["repo"], row["path"]), "drop_reason": None, "dedup_key": None}
    if row["user_id"] in state.opted_out_users or row["tenant_id"] in state.opted_out_tenants:
        # Nothing of an opted-out user's code goes further, not even to a log.
        return {**out, "prefix": None, "suffix": None, "target": None, "proposal": None, "accepted_text": None,
                "drop_reason": "opted_out"}
    if row["target"] is None:
        return {**out, "drop_reason": row["reason"]}
    language = row["language"] or ""
    if not _parses(row["prefix"], row["target"], row["suffix"], language):
        return {**out, "drop_reason": "syntax_error"}
    prefix, found_p = scrub(_tail(row["prefix"], s.prefix_window_chars), language, ner=s.ner)
    suffix, found_s = scrub(row["suffix"][: s.suffix_window_chars], language, ner=s.ner)
    target, found_t = scrub(row["target"], language, ner=s.ner)
    state.pii_found.update(found_p + found_s + found_t)
    out |= {"prefix": prefix, "suffix": suffix, "target": target}
    if _pii_share(row["target"], target) > s.mostly_pii_share:
        return {**out, "drop_reason": "mostly_pii"}
    if not re.search(r"\w", target):
        return {**out, "drop_reason": "trivial"}
    if len(target) > s.max_target_chars or target.count("\n") > s.max_target_lines:
        return {**out, "drop_reason": "too_long"}
    if row["decision"] == "accepted" and (row["es"] or 0.0) < s.rewrite_below_es:
        return {**out, "drop_reason": "rewrite"}
    key = _dedup_key(prefix, target, s.context_chars)
    out["dedup_key"] = key
    signature = minhash(target)
    if out["split"] == "eval":
        state.remember(key, target, "eval", signature)
        return out
    if key in state.seen_keys:
        return {**out, "drop_reason": "duplicate"}
    if state.seen.query(signature):
        return {**out, "drop_reason": "near_duplicate"}
    if _normalized(target) in state.eval_keys or state.eval_targets.query(signature):
        return {**out, "drop_reason": "eval_overlap"}
    state.remember(key, target, "train", signature)
    return out


def _parses(prefix: str, target: str, suffix: str, language: str) -> bool:
    document = prefix + target + suffix
    start = len(prefix.encode())
    end = start + len(target.encode())
    spans = error_spans(document.encode(), language)
    if spans is None:
        return True  # no grammar: nothing to check with
    if any(s < end and e > start or (s == e and start <= s <= end) for s, e in spans):
        return False
    # tree-sitter misses bad indentation; compile() does not, when the rest of the file is fine.
    return language != "python" or bool(spans) or compiles(document)


def _tail(text: str, chars: int) -> str:
    """The last `chars` characters, from a line start."""
    if len(text) <= chars:
        return text
    cut = text.find("\n", len(text) - chars)
    return text[cut + 1 :] if cut >= 0 else text[-chars:]


def _pii_share(original: str, scrubbed: str) -> float:
    """The share of the original text that de-identification replaced."""
    placeholders = sum(scrubbed.count(p) * len(p) for p in set(PLACEHOLDERS.values()))
    kept = len(scrubbed) - placeholders
    return (len(original) - kept) / len(original) if original else 0.0


def _normalized(text: str) -> str:
    return " ".join(text.split())


def _dedup_key(prefix: str, target: str, context_chars: int) -> str:
    context = _normalized(prefix[-context_chars:])
    return hashlib.sha256(f"{context}\x00{_normalized(target)}".encode()).hexdigest()


_LINE_COMMENT = re.compile(r"(?:#|//)[^\n]*")


def minhash(text: str) -> MinHash:
    """MinHash of the code's 3-token shingles, comments left out: the same code commented
    differently is the same example."""
    tokens = re.findall(r"\w+|[^\w\s]", _LINE_COMMENT.sub("", text))
    shingles = {" ".join(tokens[i : i + 3]) for i in range(max(1, len(tokens) - 2))}
    signature = MinHash(num_perm=64, seed=1)
    signature.update_batch([s.encode() for s in shingles])
    return signature
