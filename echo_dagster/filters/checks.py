"""The blocking checks of a `filtered_dataset` partition, on what was written: every row accounted
for, no PII or secret left (read by other rules than the redactor's: `leaks`), no dedup key twice
among the training examples, no opted-out user or tenant kept."""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date

import duckdb

from echo_dagster.filters.deidentify import (
    DS_ENTITIES,
    DS_FILENAME,
    PLACEHOLDERS,
    _engines,
    not_a_secret,
    not_an_address,
    presidio_recognizers,
)
from echo_dagster.filters.partition import FilterResult
from echo_dagster.optout import OptOut

DESCRIPTIONS = {
    "accounting_check": "rows in = kept + dropped, per reason",
    "no_pii_check": "every text (VARCHAR) column of the kept rows, read by detect-secrets' own line scan (default "
                    "plugins and filters) and Presidio's e-mail, phone, card, IBAN, US SSN and IP recognizers, none "
                    "of the redactor's filters or caches: no secret or PII left",
    "no_duplicates_check": "no dedup key twice among training examples",
    "no_opt_out_check": "no opted-out user or tenant among kept rows",
}


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    description: str
    metadata: dict


def partition_checks(con: duckdb.DuckDBPyConnection, day: date, result: FilterResult, listed: OptOut) -> list[Check]:
    """Each check of DESCRIPTIONS on partition `day`, as written by `filter_partition`."""
    stored, in_rows = con.execute(
        "SELECT (SELECT count(*) FROM filtered_dataset WHERE partition_date = $d), "
        "(SELECT count(*) FROM refined_targets WHERE partition_date = $d)", {"d": day}).fetchone()
    accounted = result.kept_train + result.kept_eval + sum(result.dropped.values())
    found = leaks(con, day)
    where = Counter(f"{leak.column}/{leak.entity}" for leak in found)
    listing = ", ".join(f"{k} {n}" for k, n in where.most_common())
    repeated = con.execute("SELECT count(*) - count(DISTINCT dedup_key) FROM training_examples").fetchone()[0]
    kept_opted = con.execute(
        "SELECT count(*) FROM filtered_dataset WHERE partition_date = $d AND drop_reason IS NULL "
        "AND (list_contains($users, user_id) OR list_contains($tenants, tenant_id))",
        {"d": day, "users": sorted(listed.users), "tenants": sorted(listed.tenants)}).fetchone()[0]
    return [
        Check("accounting_check", in_rows == stored == accounted,
              f"{in_rows} refined rows, {stored} stored, {accounted} kept or dropped",
              {"refined": in_rows, "stored": stored, "accounted": accounted}),
        Check("no_pii_check", not found, f"{len(found)} findings in kept rows" + (f": {listing}" if found else ""),
              {"found": len(found), **{f"found/{k}": n for k, n in where.items()}}),
        Check("no_duplicates_check", repeated == 0, f"{repeated} repeated dedup keys among training examples",
              {"repeated": repeated}),
        Check("no_opt_out_check", kept_opted == 0, f"{kept_opted} kept rows of opted-out users or tenants",
              {"kept_opted_out": kept_opted}),
    ]


class Leak(tuple):
    """(completion_id, entity) of a finding in a kept row; `column`: the column it was read from."""

    def __new__(cls, completion_id: str, entity: str, column: str):
        leak = super().__new__(cls, (completion_id, entity))
        leak.column = column
        return leak

    @property
    def completion_id(self) -> str:
        return self[0]

    @property
    def entity(self) -> str:
        return self[1]


# The columns a row's code is stored in: read joined, as the model reads them, so that what a cut
# at the cursor split is read whole.
_DOCUMENT_COLUMNS = ("prefix", "target", "suffix")


def leaks(con: duckdb.DuckDBPyConnection, day: date, batch_rows: int = 2_000) -> list[Leak]:
    """PII or secrets left in the day's kept rows, found by other rules than the redactor's.

    Every VARCHAR column of `filtered_dataset` (as the table has them, ids and keys included), each
    distinct line once, goes through the libraries as shipped: detect-secrets' own scanning of lines
    with its default plugins and filters, and Presidio's predefined recognizers for e-mail, phone,
    card, IBAN, US SSN and IP, over the whole text — none of the redactor's candidate-line filter,
    windows, caches or rules of its own, so that a gap in those shows here. Not findings: our
    placeholders (`<SECRET>`), a keyword value that only names a secret (`not_a_secret`, the one
    rule shared with the redactor), and a Presidio match inside a longer token (a digit run in a
    hash or a UUID)."""
    names = [n for n, kind, *_ in con.execute("DESCRIBE filtered_dataset").fetchall() if kind == "VARCHAR"]
    joined = all(n in names for n in _DOCUMENT_COLUMNS)
    columns = [n for n in names if not (joined and n in _DOCUMENT_COLUMNS)]
    select = [f'"{n}"' for n in columns]
    if joined:
        select.append(" || ".join(f"coalesce(\"{n}\", '')" for n in _DOCUMENT_COLUMNS) + ' AS "prefix+target+suffix"')
    reader = con.cursor().sql(
        f"SELECT completion_id AS owner, {', '.join(select)} FROM filtered_dataset "
        "WHERE partition_date = $day AND drop_reason IS NULL", params={"day": day}).to_arrow_reader(batch_rows)
    seen, found = set(), []
    for batch in reader:
        # The rows of one document share most of their lines: each distinct line is read once, the new
        # lines of a batch together, in their order of first appearance.
        owner: dict[str, tuple[str, str]] = {}
        table = [batch.column(n).to_pylist() for n in batch.schema.names]
        for i, completion_id in enumerate(table[0]):
            for column, texts in zip(batch.schema.names[1:], table[1:]):
                for line in (texts[i] or "").split("\n"):
                    if len(seen) > 2_000_000:  # a bound on memory; lines seen before are read again
                        seen.clear()
                    if line and line not in seen:
                        seen.add(line)
                        owner[line] = (completion_id, column)
        lines = list(owner)
        found += [Leak(owner[lines[i]][0], entity, owner[lines[i]][1]) for i, entity in scan_lines(lines)]
    return found


def scan_lines(lines: list[str]) -> list[tuple[int, str]]:
    """(index of the line, entity) of what detect-secrets and Presidio find in the lines."""
    return sorted(set(_presidio_lines(lines)) | set(_detect_secrets_lines(lines)))


def _line_index(lines: list[str]):
    starts = list(itertools.accumulate((len(line) + 1 for line in lines[:-1]), initial=0))
    return "\n".join(lines), lambda at: bisect.bisect_right(starts, at) - 1


@functools.cache
def _presidio():
    from presidio_analyzer.nlp_engine import NlpArtifacts

    _engines()  # tldextract offline
    # Each recognizer reads the lines holding a character its entity cannot lack.
    needs = {"EMAIL_ADDRESS": "@", "IP_ADDRESS": "[.:]", "IBAN_CODE": r"\d"}
    return [(r, needs.get(r.supported_entities[0], "number")) for r in presidio_recognizers()], \
        NlpArtifacts([], [], [], [], None, "en")


# A line that is one token (word characters, single hyphens between them: an id, a hash, a UUID)
# holding a character no phone number, card or SSN can hold: any such match in it is a proper part
# of the token, next to a word character or to a hyphen and a word character, so `_inside_token`
# would drop it. Those lines are not given to the three recognizers (the phone recognizer is slow
# on ids and hashes full of digits).
_ONE_TOKEN = re.compile(r"[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*")
_NOT_IN_NUMBERS = re.compile(r"[A-WYZa-wyz_]")  # phone numbers may hold `x` (an extension)
_DIGIT = re.compile(r"\d")


def _number_line(line: str) -> bool:
    return bool(_DIGIT.search(line)) and not (_ONE_TOKEN.fullmatch(line) and _NOT_IN_NUMBERS.search(line))


def _presidio_lines(lines: list[str]):
    recognizers, no_nlp = _presidio()
    selections = {}
    for recognizer, needed in recognizers:
        if needed not in selections:
            if needed == "number":
                chosen = [i for i, line in enumerate(lines) if _number_line(line)]
            else:
                pattern = re.compile(needed)
                chosen = [i for i, line in enumerate(lines) if pattern.search(line)]
            selections[needed] = (chosen, *_line_index([lines[i] for i in chosen])) if chosen else None
        if selections[needed] is None:
            continue
        chosen, text, line_of = selections[needed]
        for r in recognizer.analyze(text, recognizer.supported_entities, no_nlp):
            if r.score >= 0.4 and not _inside_token(text, r.start, r.end) and not not_an_address(text[r.start : r.end]):
                yield chosen[line_of(r.start)], r.entity_type


def _inside_token(text: str, start: int, end: int) -> bool:
    before, after = text[max(0, start - 2) : start], text[end : end + 2]
    return bool(re.search(r"(?:\w|\w-)\Z", before) or re.match(r"\w|-\w", after))


def _detect_secrets_lines(lines: list[str]):
    """detect-secrets' scan of the lines (`scan._process_line_based_plugins`, what its file scan runs)
    with its default plugins and filters. Its scan costs ~0.2 ms a line, so it runs on the lines
    where one of its plugins' own patterns matches (each pattern run once over the joined lines):
    the lines it would find nothing in are not read twice."""
    from detect_secrets.core.scan import _process_line_based_plugins
    from detect_secrets.settings import default_settings, get_plugins

    text, line_of = _line_index(lines)
    lowered = text.lower()
    lowered = lowered if len(lowered) == len(text) else None
    with default_settings():
        candidates = sorted(set().union(*(_plugin_lines(plugin, text, lowered, line_of, len(lines))
                                          for plugin in get_plugins())))
        chosen = [lines[i] for i in candidates]
        for secret in _process_line_based_plugins(list(enumerate(chosen, 1)), DS_FILENAME):
            entity = DS_ENTITIES.get(secret.type, "API_KEY")
            if not _is_placeholder(secret.secret_value) and not (secret.type == "Secret Keyword"
                                                                 and not_a_secret(secret.secret_value)):
                yield candidates[secret.line_number - 1], entity


def _plugin_lines(plugin, text: str, lowered: str | None, line_of, count: int) -> set[int]:
    """The lines where the plugin's own patterns match (for the entropy plugins: a quoted string
    over their limit; for the keyword plugin: a word of its list). `lowered`: the text lowercased,
    when that kept its offsets."""
    from detect_secrets.plugins import keyword
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin

    if isinstance(plugin, RegexBasedDetector):
        patterns, accept = plugin.denylist, None
    elif isinstance(plugin, HighEntropyStringsPlugin):
        patterns = [plugin.regex]
        accept = lambda m: plugin.calculate_shannon_entropy(m.group(2)) > plugin.entropy_limit  # noqa: E731
    elif isinstance(plugin, keyword.KeywordDetector):
        patterns, accept = [re.compile(keyword.DENYLIST_REGEX, re.IGNORECASE)], None
    else:  # a plugin of another kind: every line
        return set(range(count))
    found = set()
    for pattern in patterns:
        source, fast = text, _case_sensitive(pattern) if lowered is not None else None
        if fast is not None:
            source, pattern = lowered, fast
        pos = 0
        while m := pattern.search(source, pos):
            if accept is not None:  # findall's matches, as the plugin reads them
                if accept(m):
                    found.add(line_of(m.start()))
                pos = m.end()
                continue
            found.update(range(line_of(m.start()), line_of(max(m.start(), m.end() - 1)) + 1))
            # On from the end of the line (a pattern may take the newline before a line's start).
            pos = source.find("\n", m.start() + 1)
            if pos < 0:
                break
    return found


_ESCAPE = re.compile(r"\\.")
_UPPER = re.compile("[A-Z]")


@functools.cache
def _case_sensitive(pattern: re.Pattern) -> re.Pattern | None:
    """A case-insensitive pattern with no capital letter of its own, made case-sensitive: it matches
    the lowercased text where the original matches the text (3-4× faster); else None."""
    if not pattern.flags & re.IGNORECASE or _UPPER.search(_ESCAPE.sub("", pattern.pattern)):
        return None
    return re.compile(pattern.pattern, pattern.flags & ~re.IGNORECASE)


_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in sorted(set(PLACEHOLDERS.values()))))


def _is_placeholder(value: str) -> bool:
    """A value made of our placeholders (and punctuation) only."""
    return not re.search(r"[A-Za-z0-9]", _PLACEHOLDER.sub("", value or ""))
