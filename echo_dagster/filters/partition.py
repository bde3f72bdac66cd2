"""Build one daily partition of `filtered_dataset` from `refined_targets`.

Every refined row lands in `filtered_dataset` with its `split` and, when it does not go further,
its `drop_reason`: the training examples are the kept train rows (view `training_examples`), the
eval set the kept eval rows (view `eval_set`). Dedup and decontamination look at earlier
partitions only, so a partition's result does not depend on when later ones ran.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import date, timedelta

import duckdb
import pyarrow as pa

from echo_dagster import schema, warehouse
from echo_dagster.filters.deidentify import (
    DS_ENTITIES,
    DS_FILENAME,
    PLACEHOLDERS,
    _engines,
    not_a_secret,
    not_an_address,
)
from echo_dagster.filters.pipeline import FilterSettings, FilterState, filter_row
from echo_dagster.harvest.refine import split_document

DEDUP_WINDOW_DAYS = 30  # how far back a new example is compared with kept ones

_SCHEMA = schema.arrow_schema(schema.FILTERED_COLUMNS)


@dataclass(frozen=True)
class FilterResult:
    rows_in: int
    kept_train: int
    kept_eval: int
    dropped: dict[str, int] = field(default_factory=dict)
    pii_found: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # per filter


def filter_partition(con: duckdb.DuckDBPyConnection, day: date, *, opted_out_users=frozenset(),
                     opted_out_tenants=frozenset(), settings: FilterSettings = FilterSettings(),
                     dedup_window_days: int = DEDUP_WINDOW_DAYS, batch_rows: int = 1_000) -> FilterResult:
    state = FilterState(frozenset(opted_out_users), frozenset(opted_out_tenants), settings=settings)
    earlier = con.execute(
        "SELECT tenant_id, dedup_key, target, split FROM filtered_dataset WHERE drop_reason IS NULL "
        "AND partition_date < $day AND (split = 'eval' OR partition_date >= $since)",
        {"day": day, "since": day - timedelta(days=dedup_window_days)},
    ).fetchall()
    for tenant, key, target, split in earlier:
        state.remember(tenant, key, target, split)
    # A cursor of its own streams the day's rows while `con` writes.
    rows = con.cursor().sql(
        "SELECT * EXCLUDE (partition_date, shown_ts) FROM refined_targets "
        "WHERE partition_date = $day ORDER BY shown_ts, completion_id",
        params={"day": day},
    )
    dropped, kept, rows_in = Counter(), Counter(), 0
    documents = _Documents(con.cursor(), day)
    with warehouse.replacing_partition(con, day, "filtered_dataset"):
        for chunk in rows.to_arrow_reader(batch_rows):
            out = [filter_row(row, state) for row in documents.split(chunk.to_pylist(), state.opted_out)]
            rows_in += len(out)
            dropped.update(r["drop_reason"] for r in out if r["drop_reason"])
            kept.update(r["split"] for r in out if not r["drop_reason"])
            batch = pa.Table.from_pylist([{n: r.get(n) for n in _SCHEMA.names} for r in out], schema=_SCHEMA)
            con.register("batch", batch)
            con.execute("INSERT INTO filtered_dataset SELECT $day, * FROM batch", {"day": day})
            con.unregister("batch")
    return FilterResult(rows_in, kept["train"], kept["eval"], dict(sorted(dropped.items())),
                        dict(sorted(state.pii_found.items())),
                        {step: round(t, 3) for step, t in sorted(state.clock.seconds.items())})


class _Documents:
    """The final documents of the day's rows, fetched a batch of rows at a time, the latest kept."""

    def __init__(self, con: duckdb.DuckDBPyConnection, day: date, kept: int = 4_096):
        self.con, self.day, self.kept = con, day, kept
        self.cache: OrderedDict[str, str] = OrderedDict()

    def split(self, rows: list[dict], opted_out) -> list[dict]:
        """The rows with prefix' and suffix' from their documents; the documents of opted-out users'
        rows are not read."""
        wanted = [r for r in rows if r["document_id"] and not opted_out(r)]
        missing = list({r["document_id"] for r in wanted if r["document_id"] not in self.cache})
        if missing:
            self.cache.update(self.con.execute(
                "SELECT document_id, document FROM final_documents WHERE partition_date = $day "
                "AND list_contains($ids, document_id)", {"day": self.day, "ids": missing}).fetchall())
        for row in rows:
            row["prefix"] = row["suffix"] = None
        for row in wanted:
            self.cache.move_to_end(row["document_id"])
            row["prefix"], row["suffix"] = split_document(row | {"document": self.cache[row["document_id"]]})
        while len(self.cache) > self.kept:
            self.cache.popitem(last=False)
        return rows


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
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    _engines()  # tldextract offline
    # Each recognizer reads the lines holding a character its entity cannot lack.
    needs = {"EMAIL_ADDRESS": "@", "IP_ADDRESS": "[.:]", "IBAN_CODE": r"\d"}
    return [(r, needs.get(r.supported_entities[0], "number")) for r in (
        EmailRecognizer(), PhoneRecognizer(), IpRecognizer(), CreditCardRecognizer(), IbanRecognizer(),
        UsSsnRecognizer())], NlpArtifacts([], [], [], [], None, "en")


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
