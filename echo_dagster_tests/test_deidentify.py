"""De-identification with real Presidio, real spaCy and real tree-sitter, offline."""

import random
from collections import Counter

import pytest

from echo_dagster.filters.deidentify import find, prose_spans, redact
from echo_dagster.simulate.sessions import _PII, _plant
from echo_dagster.syntax import error_spans


def scrub(text: str, language: str) -> tuple[str, Counter]:
    """The text with every finding replaced by its placeholder, and the counts per entity."""
    findings = find(text, language)
    return redact(text, findings, 0, len(text)), Counter(f.entity for f in findings)

PLANTED = [
    '# questions: jane.doe@example.org\n',
    '# on call: Ravi Patel, +1 415 555 0142\n',
    '# reviewed by Olga Ivanova\n',
    'AWS_ACCESS_KEY_ID = "AKIAQWERTYUIOPASDFGH"\n',
    'GITHUB_TOKEN = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"\n',
    'slack = "xoxb-1234567890-abcdefghijkl"\n',
    'db_password = "Zx9!qL2#vR7@pT4"\n',
    'KEY = """-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabc\n-----END RSA PRIVATE KEY-----"""\n',
    'server = "10.20.30.40"  # internal\n',
    'card = "4111 1111 1111 1111"\n',
    'log.info("mail sent to kenji.tanaka@example.com")\n',
]
LEAKS = ["jane.doe@", "555 0142", "Ravi Patel", "Olga Ivanova", "AKIAQWERTY", "ghp_abcdef", "xoxb-1234",
         "Zx9!qL2", "MIIEowIBAAKCAQEA7", "10.20.30.40", "4111 1111", "kenji.tanaka"]


def test_planted_pii_and_secrets_do_not_survive():
    code = "def handler(event):\n    return event\n\n" + "".join(PLANTED)
    clean, counts = scrub(code, "python")
    for leak in LEAKS:
        assert leak not in clean, (leak, clean)
    for placeholder in ("<EMAIL>", "<PHONE>", "<NAME>", "<KEY>", "<SECRET>", "<IP>", "<CARD>"):
        assert placeholder in clean
    assert "def handler(event):\n    return event\n" in clean


# A function of each language, in whose body (or above it) the simulator plants.
FUNCTIONS = {"python": "def f():\n    x = 1\n    return x\n",
             "javascript": "function f() {\n  const x = 1;\n  return x;\n}\n",
             "go": "package p\n\nfunc f() int {\n\tx := 1\n\treturn x\n}\n",
             "rust": "fn f() -> i32 {\n    let x = 1;\n    x\n}\n",
             "java": "class A {\n  int f() {\n    int x = 1;\n    return x;\n  }\n}\n"}


@pytest.mark.parametrize("language", sorted(FUNCTIONS))
def test_the_simulators_planted_values_parse_and_are_caught(language):
    """Each kind the simulator plants, in each language: written as that language writes a comment
    or an assignment (the file still parses), and found by de-identification."""
    text = FUNCTIONS[language]
    kinds = set()
    for seed in range(200):
        planted_text, [planted], _ = _plant(random.Random(seed), text, (0, len(text)), language)
        assert not error_spans(planted_text.encode(), language), planted_text
        findings = find(planted_text, language)
        at = planted_text.index(planted["value"])
        assert any(at <= f.start < at + len(planted["value"]) for f in findings), planted
        kinds.add(planted["kind"])
        if len(kinds) == len(_PII):
            break
    assert len(kinds) == len(_PII)


ORDINARY = '''import os


class Bucket:
    def __init__(self, name, region="us-east-1"):
        self.name = name
        self.s3 = boto3.client("s3", region_name=region)
        self.version = "python@3.11"

    def key(self, path):
        token_count = len(path.split("/"))
        return f"{self.name}/{path}"


def handler(event, context):
    password_field = "password"
    timeout = 30
    return {"statusCode": 200, "body": os.environ.get("STAGE", "dev")}
'''


def test_ordinary_code_has_few_false_positives():
    assert find(ORDINARY, "python") == []


def test_ner_runs_only_on_comments_and_strings():
    code = 'Alice = 1  # written by Alice Smith\nname = "Bob Jones"\n'
    spans = prose_spans(code, "python")
    assert [code[s:e] for s, e in spans] == ["# written by Alice Smith", '"Bob Jones"']
    clean, counts = scrub(code, "python")
    assert clean.startswith("Alice = 1") and "Alice Smith" not in clean and "Bob Jones" not in clean
    assert counts["PERSON"] == 2


def test_words_the_ner_calls_people_in_comments_are_left_alone():
    code = ('# TODO: Fall back to Columnar storage. Overridden by @record.\n'
            'def pack(value):\n    """Pass the value; Add it to DEPLOYMENT_ENV_VAR_NAME."""\n    return value\n')
    assert [f for f in find(code, "python") if f.entity == "PERSON"] == []


def test_the_line_prefilter_finds_what_presidio_finds_in_the_whole_text():
    import importlib.util
    from pathlib import Path

    from echo_dagster.filters.deidentify import _PATTERN_ENTITIES, Finding, _engines, _merge, _pattern_findings
    from echo_dagster_tests.planted import planted_corpus

    root = Path(next(iter(importlib.util.find_spec("dagster").submodule_search_locations)))
    texts = [p.read_text() for p in sorted(root.rglob("*.py"))[::40][:25]]
    rng = random.Random(2)
    texts.append("".join(PLANTED))
    texts += [f.text for f in planted_corpus()]
    texts.append("".join(f"    x{n} = {rng.randrange(10**rng.randrange(1, 12))}  # {template}\n"
                         for n, (_, template) in enumerate(_PII * 3)))
    patterns, _, no_nlp = _engines()
    for text in texts:
        whole = [Finding(r.start, r.end, r.entity_type)
                 for r in patterns.analyze(text=text, language="en", entities=list(_PATTERN_ENTITIES),
                                           nlp_artifacts=no_nlp, score_threshold=0.4)]
        assert [(f.start, f.end) for f in _merge(_pattern_findings(text))] == [(f.start, f.end) for f in _merge(whole)]


# --- Secrets recall, false positives, code that stays code ------------------------------------------------

def test_planted_corpus_recall():
    """Recall per kind on a seeded corpus of realistic files: 112 secrets of 14 kinds and 64 PII items
    of 8 kinds, planted in assignments, calls, config dicts, environment defaults, URLs, comments,
    docstrings and strings. A plant counts when findings cover every character of its value."""
    from collections import Counter

    from echo_dagster_tests.planted import PII_KINDS, SECRET_KINDS, planted_corpus

    files = planted_corpus()
    found, planted = Counter(), Counter()
    for f in files:
        findings = find(f.text, "python")
        for p in f.plants:
            planted[p.kind] += 1
            found[p.kind] += all(any(x.start <= i < x.end for x in findings) for i in range(p.start, p.end))
        clean, _ = scrub(f.text, "python")
        compile(clean, f.name, "exec")  # redaction keeps code parseable
    secrets = sum(planted[k] for k in SECRET_KINDS)
    assert secrets >= 100 and sum(planted[k] for k in PII_KINDS) >= 50 and len(planted) >= 15
    recall = sum(found.values()) / sum(planted.values())
    per_kind = ", ".join(f"{k} {found[k]}/{planted[k]}" for k in sorted(planted))
    assert recall >= 0.95, f"recall {recall:.1%}: {per_kind}"
    assert sum(found[k] for k in SECRET_KINDS) / secrets >= 0.95, per_kind


def test_ordinary_code_with_secret_like_names_is_left_alone():
    from echo_dagster_tests.planted import clean_corpus

    texts = clean_corpus()
    found = [(t[f.start : f.end], f.entity) for t in texts for f in find(t, "python")]
    lines = sum(t.count("\n") for t in texts)
    assert len(found) <= lines / 1000, found


@pytest.mark.parametrize("line, value", [
    ('key = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"', "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ('STRIPE_KEY = "rk_live_51H8xYzAbCdEfGhIjKlMnOpQr"', "rk_live_51H8xYzAbCdEfGhIjKlMnOpQr"),
    ('maps_key = "AIzaSyD3x8Qk2L9mP4rT7vW1yZ5aB6cE0fG8hJk"', "AIzaSyD3x8Qk2L9mP4rT7vW1yZ5aB6cE0fG8hJk"),
    ('jwt_value = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.Qk2L9mP4rT7vW1yZ5aB6cE0"',
     "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.Qk2L9mP4rT7vW1yZ5aB6cE0"),
    ('slack_webhook = "https://hooks.slack.com/services/T01ABCDEF/B02GHIJKL/aBcDeFgHiJkLmNoPqRsTuVwX"',
     "https://hooks.slack.com/services/T01ABCDEF/B02GHIJKL/aBcDeFgHiJkLmNoPqRsTuVwX"),
    ('KEY = """-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF1abcQk2L9mP4rT7vW1\n=abcd\n'
     '-----END PGP PRIVATE KEY BLOCK-----"""', "lQOYBF1abcQk2L9mP4rT7vW1"),
    ('DB = "postgresql://u:pw8Kq2Lx@10.0.0.1/db"', "pw8Kq2Lx"),
    ('CACHE = "redis://:s3cr3tPw@cache:6379"', "s3cr3tPw"),
    ("# rotate: API_TOKEN=3f9a2c8e7b1d4f6a9c0e5b2d8f7a1c4e", "3f9a2c8e7b1d4f6a9c0e5b2d8f7a1c4e"),
    ('HEADERS = {"Authorization": "Bearer Qk2L9mP4rT7vW1yZ5aB6cE0fG8hJk"}', "Qk2L9mP4rT7vW1yZ5aB6cE0fG8hJk"),
    ("token: str = 'f3a9c2e8b7d14c6a9e0f5b2d8c7a1e4f'", "f3a9c2e8b7d14c6a9e0f5b2d8c7a1e4f"),
    ("api = os.getenv('API_TOKEN', 'ab8f9c2e7d1b4a6c9e0f3b5d7c2a8e1f')", "ab8f9c2e7d1b4a6c9e0f3b5d7c2a8e1f"),
    ('IBAN = "DE89 3704 0044 0532 0130 00"', "DE89 3704 0044 0532 0130 00"),
    ('SSN = "536-22-8726"', "536-22-8726"),
    ('CONFIG = "/home/jane.doe/projects/app/config.yaml"', "jane.doe"),
])
def test_what_the_filter_missed_is_found_and_only_the_value_replaced(line, value):
    clean, _ = scrub(line, "python")
    assert value not in clean, clean
    compile(clean, "<line>", "exec")
    assert clean.split("=")[0] == line.split("=")[0]  # the name and what comes before the value stay


def test_redaction_stays_inside_string_literals():
    # Presidio's e-mail pattern takes `email='` into the local part.
    clean, counts = scrub("user(email='jane@example.com')\n", "python")
    assert clean == "user(email='<EMAIL>')\n" and counts["EMAIL_ADDRESS"] == 1
    clean, _ = scrub('send(to="x", cc="ravi.patel@globex.com", retries=3)\n', "python")
    assert clean == 'send(to="x", cc="<EMAIL>", retries=3)\n'


def test_values_that_only_name_a_secret_are_not_secrets():
    from echo_dagster.filters.deidentify import not_a_secret

    code = ('TOKEN_CLI_ARGUMENT = "api_token"\npassword_field = "password"\nKEY = "__source_asset_key__"\n'
            'check.str_param(partition_key_str, "partition_key_str")\napi_key = "<SECRET>"\n'
            'secret = "${DB_SECRET}"\npassword = "changeme"\nprompt_password = "Enter your password"\n')
    assert find(code, "python") == []
    assert not not_a_secret("hunter2hunter") and not not_a_secret("qXzTbLwRmN") and not_a_secret("apiToken")


def test_the_prefilter_hides_nothing_from_the_secret_detectors():
    """Every detector on every line finds what they find on the candidate lines, on real files and on
    the planted corpus."""
    import importlib.util
    from pathlib import Path

    from echo_dagster.filters.deidentify import _merge, _secret_findings
    from echo_dagster_tests.planted import clean_corpus, planted_corpus

    root = Path(next(iter(importlib.util.find_spec("dagster").submodule_search_locations)))
    texts = [p.read_text() for p in sorted(root.rglob("*.py"))[::40][:25]]
    texts += [f.text for f in planted_corpus()] + clean_corpus() + ["".join(PLANTED)]
    for text in texts:
        every_line, offset = [], 0
        for line in text.split("\n"):
            every_line.append((offset, line))
            offset += len(line) + 1
        assert _merge(_secret_findings(text)) == _merge(_secret_findings(text, every_line))


def test_short_ipv6_matches_are_not_addresses():
    # Presidio's IP recognizer takes the slice `x[::2]` for the address ::2.
    assert find("evens = sample[::2]\nodds = sample[1::2]\nLOOPBACK = '::1'\n", "python") == []
    assert [f.entity for f in find('ADDR = "fe80::1ff:fe23:4567:890a"\n', "python")] == ["IP_ADDRESS"]
