"""De-identification with real Presidio, real spaCy and real tree-sitter, offline."""

import random

from echo_dagster.filters.deidentify import find, prose_spans, scrub
from echo_dagster.simulate.sessions import _FIRST, _LAST, _PII

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


def test_the_simulators_planted_values_are_caught():
    rng = random.Random(1)
    for kind, template in _PII:
        value = template.format(first=rng.choice(_FIRST), last=rng.choice(_LAST), n4=rng.randrange(1000, 9999),
                                key16="ABCDEFGHIJKLMNOP", key36="a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8")
        findings = find(f"def f():\n    {value}\n    return 1\n", "python")
        assert findings, (kind, value)


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

    root = Path(next(iter(importlib.util.find_spec("dagster").submodule_search_locations)))
    texts = [p.read_text() for p in sorted(root.rglob("*.py"))[::40][:25]]
    rng = random.Random(2)
    texts.append("".join(PLANTED))
    texts.append("".join(f"    x{n} = {rng.randrange(10**rng.randrange(1, 12))}  # {template}\n"
                         for n, (_, template) in enumerate(_PII * 3)))
    patterns, _, no_nlp = _engines()
    for text in texts:
        whole = [Finding(r.start, r.end, r.entity_type)
                 for r in patterns.analyze(text=text, language="en", entities=list(_PATTERN_ENTITIES),
                                           nlp_artifacts=no_nlp, score_threshold=0.4)]
        assert [(f.start, f.end) for f in _merge(_pattern_findings(text))] == [(f.start, f.end) for f in _merge(whole)]
