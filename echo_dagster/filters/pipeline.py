"""The filters between refined targets and training data, in a fixed order, each with a reason code.

    opted_out → (no target: the refine reason) → syntax_error → mostly_pii → trivial → too_long →
    rewrite → paste_dominated → [eval split: routed to the eval set, splits.py] → duplicate →
    near_duplicate → eval_overlap

Opt-out comes first so that nothing reads the code of someone who opted out. De-identification
replaces PII and secrets with placeholders in every text column a row is stored with: prefix,
suffix and target (from the findings in the whole final document), proposal and accepted text
(their own findings, and wherever a value found in the document recurs in them), repo and path.
The syntax check holds on what is kept: when de-identification replaced something in a document,
the target must still parse in the redacted document. Rows from evaluation-split files (a
deterministic hash of repo and path) go to the eval set, never to training; a training row that
equals or nearly equals an eval row of its tenant filtered before it is dropped (`eval_overlap`),
and the check that holds whatever the order and across tenants runs at training time
(`filters.decontaminate`).
"""

from __future__ import annotations

import bisect
import hashlib
import re
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from datasketch import MinHash, MinHashLSH

from echo_dagster import languages
from echo_dagster.filters.deidentify import (
    PLACEHOLDERS,
    Finding,
    find,
    find_values,
    literal_spans,
    merge,
    prose_spans,
    redact,
    values,
)
from echo_dagster.splits import file_split
from echo_dagster.syntax import error_spans, parse

REASONS = ("opted_out", "syntax_error", "mostly_pii", "trivial", "too_long", "rewrite", "paste_dominated",
           "duplicate", "near_duplicate", "eval_overlap")


@dataclass(frozen=True)
class FilterSettings:
    max_target_chars: int = 2_000
    max_target_lines: int = 8
    rewrite_below_es: float = 0.3  # accepted, yet the kept code shares this little with the proposal
    mostly_pii_share: float = 0.5  # of the target's characters, after de-identification
    paste_share: float = 0.5  # of the target's region that appeared faster than typing
    near_duplicate_jaccard: float = 0.85
    context_chars: int = 200  # of the prefix's tail, in the dedup key
    # The context a training example keeps around its target (a prompt takes a few hundred tokens).
    prefix_window_chars: int = 4_000
    suffix_window_chars: int = 2_000
    ner: bool = True


class Clock:
    """Seconds spent per filter, lap by lap."""

    def __init__(self):
        self.seconds: Counter = Counter()
        self._last = time.perf_counter()

    def start(self) -> None:
        self._last = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] += now - self._last
        self._last = now


# Rows come in time order, and the rows of one final document (a session's) are spread over the
# hours the session lasted; this many scans cover the sessions open at once on a busy day.
_SCANS_KEPT = 4_096
_SCRUBBED_KEPT = 100_000
_PATH_PARTS = str.maketrans("/\\", "\n\n")


@dataclass
class FilterState:
    """What earlier partitions contribute: their dedup keys and targets, and the eval targets. All of
    it is per tenant: one tenant's rows never make another's a duplicate or an eval overlap."""

    opted_out_users: frozenset = frozenset()
    opted_out_tenants: frozenset = frozenset()
    seen_keys: set = field(default_factory=set)  # dedup keys, which hold the tenant
    seen: dict = field(default_factory=dict)  # tenant -> MinHashLSH of kept training targets
    eval_keys: set = field(default_factory=set)  # (tenant, normalized eval target)
    eval_targets: dict = field(default_factory=dict)  # tenant -> MinHashLSH of eval targets
    settings: FilterSettings = FilterSettings()
    pii_found: Counter = field(default_factory=Counter)
    clock: Clock = field(default_factory=lambda: Clock())
    scans: OrderedDict = field(default_factory=OrderedDict)  # the latest documents' scans
    scrubbed: dict = field(default_factory=dict)  # findings of proposals, accepted texts, paths, repos

    def _lsh(self, split: str, tenant: str) -> MinHashLSH:
        index = self.eval_targets if split == "eval" else self.seen
        if tenant not in index:
            index[tenant] = MinHashLSH(threshold=self.settings.near_duplicate_jaccard, num_perm=64)
        return index[tenant]

    def opted_out(self, row: dict) -> bool:
        return row["user_id"] in self.opted_out_users or row["tenant_id"] in self.opted_out_tenants

    def scan(self, document: str, language: str) -> DocumentScan:
        """The document's scan, from the cache when a row of the same final document came lately."""
        key = hashlib.sha1(f"{language}\x00{document}".encode()).digest()
        if key in self.scans:
            self.scans.move_to_end(key)
            return self.scans[key]
        scan = self.scans[key] = scan_document(document, language, self.settings.ner, self.clock)
        if len(self.scans) > _SCANS_KEPT:
            self.scans.popitem(last=False)
        return scan

    def scrub(self, text: str | None, language: str, known: dict | None = None, ner: bool | None = None) -> str | None:
        """A text column de-identified on its own: its findings, and the values found in its
        document wherever they occur in it."""
        if not text:
            return text
        key = (text, language)
        findings = self.scrubbed.get(key)
        if findings is None:
            if len(self.scrubbed) > _SCRUBBED_KEPT:
                self.scrubbed.clear()
            findings = find(text, language, ner=self.settings.ner if ner is None else ner)
            if not language:  # a path or a repo: each of its parts read alone too (`/srv/jane@x.org/`)
                findings = merge(findings + find(text.translate(_PATH_PARTS), "", ner=False))
            self.scrubbed[key] = findings
        if known:
            findings = merge(findings + find_values(text, known))
        self.pii_found.update(f.entity for f in findings)
        return redact(text, findings, 0, len(text)) if findings else text

    def remember(self, tenant: str, key: str, target: str, split: str, signature: MinHash) -> None:
        """A kept row of `tenant`, that the tenant's later rows are compared with."""
        if split == "eval":
            self.eval_keys.add((tenant, normalized(target)))
        else:
            self.seen_keys.add(key)
        lsh = self._lsh(split, tenant)
        if key not in lsh:
            lsh.insert(key, signature)

    def duplicate(self, tenant: str, key: str, signature: MinHash) -> str | None:
        if key in self.seen_keys:
            return "duplicate"
        return "near_duplicate" if tenant in self.seen and self.seen[tenant].query(signature) else None

    def overlaps_eval(self, tenant: str, target: str, signature: MinHash) -> bool:
        return (tenant, normalized(target)) in self.eval_keys or \
            (tenant in self.eval_targets and bool(self.eval_targets[tenant].query(signature)))


def filter_row(row: dict, state: FilterState) -> dict:
    """The row with `split` (train or eval), `drop_reason` (None when kept), de-identified text and
    its `dedup_key`."""
    s, clock = state.settings, state.clock
    clock.start()
    out = {**row, "split": file_split(row["repo"], row["path"]), "drop_reason": None, "dedup_key": None}
    # Where the code lives can name its author (/home/jane.doe/...): de-identified for every row.
    out |= {"repo": state.scrub(row["repo"], "", ner=False), "path": state.scrub(row["path"], "", ner=False)}
    clock.lap("deidentify")
    if state.opted_out(row):
        # Nothing of an opted-out user's code goes further, not even to a log.
        return {**out, "prefix": None, "suffix": None, "target": None, "proposal": None, "accepted_text": None,
                "drop_reason": "opted_out"}
    language = row["language"] or ""
    if row["target"] is None:
        out |= {n: state.scrub(row[n], language) for n in ("proposal", "accepted_text")}
        clock.lap("deidentify")
        return {**out, "drop_reason": row["reason"]}
    clock.lap("opt_out")
    document = row["prefix"] + row["target"] + row["suffix"]
    scan = state.scan(document, language)
    start, end = len(row["prefix"]), len(row["prefix"]) + len(row["target"])
    parses = scan.parses(document, start, end)
    clock.lap("syntax")
    # Whole lines: the window starts at a line start and ends at a line end (what the leak check reads
    # as a line is a line of the document).
    window = _line_start(document, start - s.prefix_window_chars, start)
    window_end = _line_end(document, end + s.suffix_window_chars, end)
    prefix, target = redact(document, scan.findings, window, start), redact(document, scan.findings, start, end)
    suffix = redact(document, scan.findings, end, window_end)
    state.pii_found.update(f.entity for f in scan.findings if f.end > window and f.start < window_end)
    out |= {"prefix": prefix, "suffix": suffix, "target": target}
    # The document's values wherever they recur: a key the proposal repeated, a name in the accepted text.
    out |= {n: state.scrub(row[n], language, scan.values(document)) for n in ("proposal", "accepted_text")}
    clock.lap("deidentify")
    if not parses:
        return {**out, "drop_reason": "syntax_error"}
    # What is kept must parse too: a placeholder can break code where a finding left a literal.
    if not scan.inert and not scan.redacted_parses(document, start, end, language):
        clock.lap("syntax")
        return {**out, "drop_reason": "syntax_error"}
    clock.lap("syntax")
    mostly_pii = _pii_share(row["target"], target) > s.mostly_pii_share
    clock.lap("deidentify")
    if mostly_pii:
        return {**out, "drop_reason": "mostly_pii"}
    if not re.search(r"\w", target):
        return {**out, "drop_reason": "trivial"}
    if len(target) > s.max_target_chars or target.count("\n") > s.max_target_lines:
        return {**out, "drop_reason": "too_long"}
    if row["decision"] == "accepted" and (row["es"] or 0.0) < s.rewrite_below_es:
        return {**out, "drop_reason": "rewrite"}
    if (row.get("pasted_share") or 0.0) > s.paste_share:
        return {**out, "drop_reason": "paste_dominated"}
    clock.lap("noise")
    tenant = row["tenant_id"]
    # An eval row's key holds its file too: the eval set keeps one row of each (file, prefix tail,
    # target) (view `eval_set`), where training drops a repeat from any file.
    place = (out["repo"], out["path"]) if out["split"] == "eval" else None
    key = dedup_key(tenant, prefix, target, s.context_chars, place)
    out["dedup_key"] = key
    signature = minhash(target, language)
    if out["split"] == "eval":
        state.remember(tenant, key, target, "eval", signature)
        clock.lap("dedup")
        return out
    duplicate = state.duplicate(tenant, key, signature)
    clock.lap("dedup")
    if duplicate:
        return {**out, "drop_reason": duplicate}
    overlap = state.overlaps_eval(tenant, target, signature)
    if not overlap:
        state.remember(tenant, key, target, "train", signature)
    clock.lap("decontamination")
    return {**out, "drop_reason": "eval_overlap"} if overlap else out


@dataclass(frozen=True)
class DocumentScan:
    """What the filters need to know of a final document, found once for all its rows: the syntax
    errors (byte spans; None without a grammar), whether the language's own check passes (Python's
    compile()), its PII findings, and the same of its redacted versions (one per way its rows cut
    it), when rows ask."""

    error_spans: list[tuple[int, int]] | None
    compiles: bool
    findings: list[Finding]
    inert: bool = True  # replacing the findings cannot change how the document parses
    redacted: dict = field(default_factory=dict, compare=False)  # redacted document: (error spans, compiles)
    _values: list = field(default_factory=list, compare=False)

    def parses(self, document: str, start: int, end: int) -> bool:
        """Whether document[start:end] holds no syntax error."""
        return _parses(self.error_spans, self.compiles, document, start, end)

    def redacted_parses(self, document: str, start: int, end: int, language: str) -> bool:
        """Whether the target still parses in the document as its row keeps it: the findings before,
        in and after the target replaced (a finding cut by the target's edge on both sides)."""
        head, body = redact(document, self.findings, 0, start), redact(document, self.findings, start, end)
        redacted = head + body + redact(document, self.findings, end, len(document))
        if redacted not in self.redacted:
            tree = parse(redacted.encode(), language)
            spans = error_spans(b"", language, tree) if tree else None
            self.redacted[redacted] = (spans, bool(spans) or languages.language(language).compiles(redacted))
        spans, ok = self.redacted[redacted]
        return _parses(spans, ok, redacted, len(head), len(head) + len(body))

    def values(self, document: str) -> dict[str, str]:
        """The texts of its findings, and their entities."""
        if not self._values:
            self._values.append(values(document, self.findings))
        return self._values[0]


def _parses(spans: list[tuple[int, int]] | None, ok: bool, document: str, start: int, end: int) -> bool:
    if spans is None:
        return True  # no grammar: nothing to check with
    if spans:
        start, end = len(document[:start].encode()), len(document[:end].encode())
        return not any(s < end and e > start or (s == e and start <= s <= end) for s, e in spans)
    return ok  # tree-sitter misses bad indentation; compile() does not


def scan_document(document: str, language: str, ner: bool, clock: Clock) -> DocumentScan:
    tree = parse(document.encode(), language)
    spans = error_spans(b"", language, tree) if tree else None
    ok = bool(spans) or languages.language(language).compiles(document)  # its own check, past tree-sitter's
    clock.lap("syntax")
    findings = find(document, language, ner=ner, tree=tree)
    inert = not findings or _inert(document, language, findings, tree)
    clock.lap("deidentify")
    return DocumentScan(spans, ok, findings, inert)


# What a placeholder may not replace, or follow within a few characters, for the replacement to
# leave the tokens as they were: quotes and backslashes (an escape cut in two), braces (an
# f-string's fields, a template literal's `${…}`), newlines.
_TOKEN_BREAKERS = re.compile(r"[\n\\{}'\"]")


def _inert(document: str, language: str, findings: list[Finding], tree) -> bool:
    """Whether replacing the findings leaves the document's syntax as it was: each finding lies
    inside one comment, or inside one string literal's content away from its escapes and fields."""
    if tree is None:
        return False
    literals = literal_spans(document, language, tree)
    inside = {(s, e): (cs, ce) for s, e, cs, ce in literals}
    spans = prose_spans(document, language, tree)  # comments and literals
    starts = [s for s, _ in spans]
    for f in findings:
        i = bisect.bisect_right(starts, f.start) - 1
        if i < 0 or _TOKEN_BREAKERS.search(document, f.start, f.end):
            return False
        s, e = spans[i]
        cs, ce = inside.get((s, e), (s, e))  # a comment: all of it
        if not cs <= f.start < f.end <= ce:
            return False
        if (s, e) in inside and ("{" in document[cs:ce] or "\\" in document[max(cs, f.start - 10) : f.start]):
            return False
    return True


def _line_start(text: str, at: int, limit: int) -> int:
    """The start of the first whole line from `at` on, or `at` when no line starts before `limit`."""
    if at <= 0:
        return 0
    cut = text.find("\n", at - 1, limit)
    return cut + 1 if cut >= 0 else at


def _line_end(text: str, at: int, limit: int) -> int:
    """The end of the last whole line before `at` (after its newline), or `at` when no line ends
    between `limit` and `at`."""
    if at >= len(text):
        return len(text)
    cut = text.rfind("\n", limit, at)
    return cut + 1 if cut >= 0 else at


def _pii_share(original: str, scrubbed: str) -> float:
    """The share of the original text that de-identification replaced."""
    placeholders = sum(scrubbed.count(p) * len(p) for p in set(PLACEHOLDERS.values()))
    kept = len(scrubbed) - placeholders
    return (len(original) - kept) / len(original) if original else 0.0


def normalized(text: str) -> str:
    return " ".join(text.split())


def dedup_key(tenant: str, prefix: str, target: str, context_chars: int, place: tuple | None = None) -> str:
    context = normalized(prefix[-context_chars:])
    where = "" if place is None else f"\x00{place[0]}\x00{place[1]}"
    return hashlib.sha256(f"{tenant}\x00{context}\x00{normalized(target)}{where}".encode()).hexdigest()


_TEMPLATE = MinHash(num_perm=64, seed=1)  # its permutations, made once, cost more than the hashing


def shingles(text: str, language: str) -> set[str]:
    """The code's 3-token shingles, line comments left out: the same code commented differently is
    the same example."""
    comment = languages.language(language).line_comment  # `#` is code in JavaScript and Rust
    tokens = re.findall(r"\w+|[^\w\s]", re.sub(re.escape(comment) + r"[^\n]*", "", text))
    return {" ".join(tokens[i : i + 3]) for i in range(max(1, len(tokens) - 2))}


def minhash(text: str, language: str) -> MinHash:
    """MinHash of `shingles`: its Jaccard similarity estimates theirs."""
    signature = MinHash(num_perm=64, seed=1, permutations=_TEMPLATE.permutations, scheme=_TEMPLATE.scheme)
    signature.update_batch([s.encode() for s in shingles(text, language)])
    return signature
