"""A deterministic corpus of Python files with planted secrets and PII, and one with none.

Every value is generated from a seed in the shape of the real thing (a Luhn-valid card, an IBAN
with its checksum, a phone number valid for its region, a JWT whose parts decode, a PEM block
of the right line width, passwords and tokens from their alphabets) and planted where people leave
them in code: assignments, annotated assignments, keyword arguments, config dicts, environment
defaults, URLs, comments, docstrings, log and error strings. Each plant records its kind, its value
and where the value lies in the file, so that a detector's recall can be measured per kind.
"""

from __future__ import annotations

import base64
import json
import random
import string
import textwrap
from dataclasses import dataclass

FIRST = ("Jane", "Ravi", "Olga", "Tomasz", "Amara", "Kenji", "Lucia", "Omar", "Mei", "Sipho", "Ana", "Lars", "Priya",
         "Diego", "Fatima", "Chen", "Ingrid", "Mateo", "Aisha", "Pavel")
LAST = ("Doe", "Patel", "Ivanova", "Nowak", "Okafor", "Tanaka", "Rossi", "Haddad", "Zhang", "Dlamini", "Silva",
        "Eriksson", "Sharma", "Lopez", "Khan", "Wong", "Fischer", "Moreau", "Kowalski", "Nguyen")
COMPANIES = ("acme-corp.io", "globex.com", "initech.co.uk", "umbrella-labs.de", "hooli.com", "vandelay.org")
SECRET_KINDS = ("aws_access_key", "aws_secret_key", "github_token", "slack_token", "slack_webhook", "stripe_key",
                "google_api_key", "jwt", "private_key", "pgp_private_key", "url_password", "password",
                "generic_token", "bearer_token")
PII_KINDS = ("email", "phone", "credit_card", "iban", "us_ssn", "ip_address", "person_name", "home_dir")


@dataclass(frozen=True)
class Plant:
    kind: str
    value: str
    start: int  # of the value in its file
    end: int


@dataclass(frozen=True)
class PlantedFile:
    name: str
    text: str
    plants: tuple[Plant, ...]


# --- Values ------------------------------------------------------------------------------------------

_ALNUM = string.ascii_letters + string.digits
_B64URL = _ALNUM + "-_"
_UPPER_DIGITS = string.ascii_uppercase + string.digits


def _pick(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _luhn_complete(digits: str) -> str:
    total = 0
    for i, d in enumerate(reversed(digits + "0")):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return digits + str((10 - total % 10) % 10)


def _iban(rng: random.Random) -> str:
    country, bban = rng.choice((
        ("DE", lambda: _pick(rng, string.digits, 18)),
        ("GB", lambda: rng.choice(("NWBK", "BARC", "LOYD", "MIDL")) + _pick(rng, string.digits, 14)),
        ("NL", lambda: rng.choice(("ABNA", "INGB", "RABO")) + _pick(rng, string.digits, 10)),
        ("FR", lambda: _pick(rng, string.digits, 23)),
    ))
    bban = bban()
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    iban = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.5 else iban


def _phone(rng: random.Random) -> str:
    import phonenumbers

    while True:
        region, text = rng.choice((
            ("US", lambda: f"+1 {rng.choice((212, 415, 617, 312, 206, 303))} {rng.randint(200, 999)} "
                           f"{rng.randint(1000, 9999)}"),
            ("US", lambda: f"({rng.choice((646, 510, 773, 425))}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}"),
            ("GB", lambda: f"+44 20 {rng.randint(3000, 8999)} {rng.randint(1000, 9999)}"),
            ("DE", lambda: f"+49 30 {rng.randint(2000000, 9999999)}"),
        ))
        text = text()
        if phonenumbers.is_valid_number(phonenumbers.parse(text, region)):
            return text


def _ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(101, 772) if a != 666])
    return f"{area:03d}-{rng.randint(10, 99):02d}-{rng.randint(1000, 9999):04d}"


def _password(rng: random.Random) -> str:
    while True:
        word = _pick(rng, _ALNUM, rng.randint(10, 16)) + rng.choice("!#%^*-_") + _pick(rng, _ALNUM, 3)
        if any(c.isdigit() for c in word) and any(c.isupper() for c in word) and any(c.islower() for c in word):
            return word


def _jwt(rng: random.Random) -> str:
    header = {"alg": rng.choice(("HS256", "RS256")), "typ": "JWT"}
    payload = {"sub": str(rng.randint(10**6, 10**9)), "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
               "iat": rng.randint(1_600_000_000, 1_800_000_000)}
    return ".".join((_b64url(json.dumps(header).encode()), _b64url(json.dumps(payload).encode()),
                     _b64url(rng.randbytes(32))))


def _pem(rng: random.Random, kind: str) -> str:
    body = base64.b64encode(rng.randbytes(rng.randint(180, 360))).decode()
    lines = textwrap.wrap(body, 64)
    if kind == "PGP":
        return ("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n" + "\n".join(lines) + "\n=" + _pick(rng, _ALNUM, 4)
                + "\n-----END PGP PRIVATE KEY BLOCK-----")
    return f"-----BEGIN {kind} PRIVATE KEY-----\n" + "\n".join(lines) + f"\n-----END {kind} PRIVATE KEY-----"


def value(kind: str, rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return {
        "aws_access_key": lambda: "AKIA" + _pick(rng, _UPPER_DIGITS, 16),
        "aws_secret_key": lambda: _pick(rng, _ALNUM + "/+", 40),
        "github_token": lambda: rng.choice(("ghp_", "gho_", "ghs_")) + _pick(rng, _ALNUM, 36),
        "slack_token": lambda: (rng.choice(("xoxb-", "xoxp-")) + str(rng.randint(10**10, 10**12)) + "-"
                                + str(rng.randint(10**10, 10**12)) + "-" + _pick(rng, _ALNUM, 24)),
        "slack_webhook": lambda: ("https://hooks.slack.com/services/T" + _pick(rng, _UPPER_DIGITS, 9)
                                  + "/B" + _pick(rng, _UPPER_DIGITS, 9) + "/" + _pick(rng, _ALNUM, 24)),
        "stripe_key": lambda: rng.choice(("sk_live_", "rk_live_")) + _pick(rng, _ALNUM, rng.choice((24, 34, 99))),
        "google_api_key": lambda: "AIza" + _pick(rng, _B64URL, 35),
        "jwt": lambda: _jwt(rng),
        "private_key": lambda: _pem(rng, rng.choice(("RSA", "EC", "OPENSSH"))),
        "pgp_private_key": lambda: _pem(rng, "PGP"),
        "url_password": lambda: _pick(rng, _ALNUM, rng.randint(12, 20)),
        "password": lambda: _password(rng),
        "generic_token": lambda: (_pick(rng, "0123456789abcdef", rng.choice((32, 40))) if rng.random() < 0.5
                                  else _pick(rng, _B64URL, rng.randint(32, 44))),
        "bearer_token": lambda: _pick(rng, _B64URL, rng.randint(36, 48)),
        "email": lambda: f"{first.lower()}.{last.lower()}@{rng.choice(COMPANIES)}",
        "phone": lambda: _phone(rng),
        "credit_card": lambda: _card(rng),
        "iban": lambda: _iban(rng),
        "us_ssn": lambda: _ssn(rng),
        "ip_address": lambda: rng.choice((f"203.0.113.{rng.randint(2, 254)}", f"198.51.100.{rng.randint(2, 254)}",
                                          f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}",
                                          f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}")),
        "person_name": lambda: f"{first} {last}",
        "home_dir": lambda: rng.choice((f"{first.lower()}.{last.lower()}", f"{first.lower()}{last.lower()}",
                                        f"{first[0].lower()}{last.lower()}")),
    }[kind]()


def _card(rng: random.Random) -> str:
    start = rng.choice(("4", "51", "55"))
    digits = _luhn_complete(start + _pick(rng, string.digits, 15 - len(start)))
    sep = rng.choice(("", " ", "-"))
    return sep.join(digits[i : i + 4] for i in range(0, 16, 4))


# --- Where they are planted ----------------------------------------------------------------------------

# Statements (valid Python at module level) holding `{v}` once. `{name}` takes a name fitting the kind.
_FORMS = {
    "assignment": ['{name} = "{v}"\n', "{name} = '{v}'\n"],
    "annotated": ['{name}: str = "{v}"\n', "{name}: Final[str] = '{v}'\n"],
    "call": ['client = ApiClient(base_url="https://api.internal.example", {kwarg}="{v}")\n',
             'session.auth = HTTPTokenAuth({kwarg}="{v}", retries=3)\n'],
    "config_dict": ['SETTINGS = {{\n    "host": "db.internal",\n    "port": 5432,\n    "{key}": "{v}",\n}}\n'],
    "env_default": ['{name} = os.getenv("{env}", "{v}")\n', '{name} = os.environ.get("{env}", "{v}")\n'],
    "comment": ["# {name}={v}  (rotate after the migration)\n", "# old {label}: {v}\n"],
    "docstring": ['def connect():\n    """Connect to the staging cluster.\n\n    Uses {label} {v} until the vault is wired.\n'
                  '    """\n    return None\n'],
    "log_string": ['log.info("using {label} %s", "{v}")\n', 'warnings.warn("{label} {v} is deprecated")\n'],
}
_PII_FORMS = {
    "comment": ["# questions: {v}\n", "# contact {v} before changing this\n"],
    "docstring": ['def notify():\n    """Send the nightly report; escalation: {v}."""\n    return None\n'],
    "log_string": ['log.warning("payment failed for %s", "{v}")\n', 'raise ValueError("no account for {v}")\n'],
    "assignment": ['{name} = "{v}"\n'],
    "config_dict": ['CUSTOMER = {{\n    "id": 1042,\n    "{key}": "{v}",\n    "active": True,\n}}\n'],
    "call": ['send_invoice(customer_id=1042, {kwarg}="{v}")\n'],
}
_NAME_FORMS = ["# Author: {v}\n", "# Copyright 2025 {v}. All rights reserved.\n",
               'def audit():\n    """Written by {v} for the billing team."""\n    return None\n',
               'raise PermissionError("ask {v} for access")\n', "# Maintainer: {v} (on call this quarter)\n"]
_HOME_FORMS = ['CONFIG_PATH = "/home/{v}/projects/billing/config.yaml"\n',
               'sys.path.insert(0, "/Users/{v}/work/shared-libs")\n',
               "DATA_DIR = r\"C:\\Users\\{v}\\Documents\\exports\"\n",
               "# run with: python /home/{v}/bin/sync.py --full\n"]
_URL_FORMS = ['DATABASE_URL = "postgresql://app:{v}@10.0.{a}.{b}:5432/orders"\n',
              'REDIS_URL = "redis://:{v}@cache:6379/0"\n',
              'BROKER_URL = os.getenv("BROKER_URL", "amqp://worker:{v}@rabbitmq/jobs")\n',
              'engine = create_engine("mysql+pymysql://report:{v}@db-replica/analytics")\n',
              "# staging db: postgresql://admin:{v}@203.0.113.{a}/app\n"]
_BLOCK_FORMS = ['{name} = """{v}"""\n', 'SSH_KEYS = {{\n    "deploy": """{v}""",\n}}\n',
                "# {label} (do not commit):\n{commented}\n"]
_BEARER_FORMS = ['HEADERS = {{"Authorization": "Bearer {v}", "Accept": "application/json"}}\n',
                 'requests.get(url, headers={{"Authorization": "Bearer {v}"}}, timeout=10)\n',
                 "# curl -H 'Authorization: Bearer {v}' https://api.example.com/v1/me\n"]

_NAMES = {
    "aws_access_key": ("AWS_ACCESS_KEY_ID", "aws_access_key_id", "access_key"),
    "aws_secret_key": ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key", "secret_key"),
    "github_token": ("GITHUB_TOKEN", "gh_token", "github_api_token"),
    "slack_token": ("SLACK_BOT_TOKEN", "slack_token", "bot_token"),
    "slack_webhook": ("SLACK_WEBHOOK", "slack_webhook", "alerts_webhook_url"),
    "stripe_key": ("STRIPE_KEY", "stripe_secret_key", "payments_key"),
    "google_api_key": ("GOOGLE_API_KEY", "maps_key", "geocoder_key"),
    "jwt": ("jwt_value", "SERVICE_JWT", "id_token"),
    "password": ("DB_PASSWORD", "admin_password", "smtp_passwd", "pwd"),
    "generic_token": ("API_TOKEN", "auth_token", "token", "webhook_secret", "client_secret"),
    "email": ("support_email", "OWNER_EMAIL", "contact"),
    "phone": ("support_phone", "ONCALL_PHONE", "contact_number"),
    "credit_card": ("test_card", "CARD_NUMBER", "card"),
    "iban": ("iban", "PAYOUT_IBAN", "account_iban"),
    "us_ssn": ("ssn", "customer_ssn", "tax_id"),
    "ip_address": ("DB_HOST", "server_ip", "upstream"),
}
_LABELS = {"aws_access_key": "aws key", "aws_secret_key": "aws secret", "github_token": "github token",
           "slack_token": "slack token", "slack_webhook": "webhook", "stripe_key": "stripe key",
           "google_api_key": "maps key", "jwt": "jwt", "password": "password", "generic_token": "api token",
           "private_key": "deploy key", "pgp_private_key": "signing key"}
_ENV = {"aws_access_key": "AWS_ACCESS_KEY_ID", "aws_secret_key": "AWS_SECRET_ACCESS_KEY",
        "github_token": "GITHUB_TOKEN", "slack_token": "SLACK_BOT_TOKEN", "slack_webhook": "SLACK_WEBHOOK_URL",
        "stripe_key": "STRIPE_KEY", "google_api_key": "MAPS_API_KEY", "jwt": "SERVICE_JWT",
        "password": "DB_PASSWORD", "generic_token": "API_TOKEN"}


def plant_statement(kind: str, rng: random.Random) -> tuple[str, str, int]:
    """A statement holding a planted value of the kind: (statement, value, offset of the value)."""
    v = value(kind, rng)
    name = rng.choice(_NAMES.get(kind, ("value",)))
    fields = {"name": name, "kwarg": name.lower(), "key": name.lower(), "env": _ENV.get(kind, name.upper()),
              "label": _LABELS.get(kind, kind.replace("_", " ")), "a": rng.randint(0, 255), "b": rng.randint(2, 254)}
    if kind in ("private_key", "pgp_private_key"):
        form = rng.choice(_BLOCK_FORMS)
        fields["name"] = rng.choice(("DEPLOY_KEY", "private_key", "SIGNING_KEY"))
        if "{commented}" in form:
            commented = "\n".join("# " + line for line in v.split("\n"))
            statement = form.format(**fields, commented=commented)
            return statement, commented[2:], statement.index(commented) + 2
    elif kind == "url_password":
        form = rng.choice(_URL_FORMS)
    elif kind == "bearer_token":
        form = rng.choice(_BEARER_FORMS)
    elif kind == "person_name":
        form = rng.choice(_NAME_FORMS)
    elif kind == "home_dir":
        form = rng.choice(_HOME_FORMS)
    elif kind in PII_KINDS:
        form = rng.choice(rng.choice(list(_PII_FORMS.values())))
    else:
        forms = dict(_FORMS)
        if kind == "aws_secret_key":  # a bare 40-character string says nothing in prose
            forms = {k: f for k, f in forms.items() if k not in ("comment", "docstring", "log_string")}
        form = rng.choice(rng.choice(list(forms.values())))
    statement = form.format(**fields, v=v, commented="")
    return statement, v, statement.index(v)


# --- Files ---------------------------------------------------------------------------------------------

_HEADER = '''"""{doc}"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Final

import requests

log = logging.getLogger(__name__)
'''
_DOCS = ("Clients for the billing service and its webhooks.", "Settings of the nightly export jobs.",
         "Helpers shared by the ingestion workers.", "Glue between the payments API and the ledger.",
         "Deployment configuration for the staging cluster.", "Small utilities for the reporting dashboard.")
# Ordinary code around the plants (and the whole of the clean corpus), with the near misses that
# detectors trip on: secret-like names holding names, lookups and templates; hashes of files are
# left out, since a random hex string is what a secret looks like.
BOILERPLATE = [
    '''

@dataclass
class RetryPolicy:
    attempts: int = 3
    backoff_s: float = 0.5
    statuses: tuple[int, ...] = (429, 502, 503)

    def delays(self) -> list[float]:
        return [self.backoff_s * 2**i for i in range(self.attempts)]
''',
    '''

def chunked(items, size):
    """Yield successive chunks of `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
''',
    '''

TOKEN_CLI_ARGUMENT = "api_token"
PASSWORD_FIELD = "password"
SECRET_NAME = "prod/billing/db-password"
api_key = os.environ["BILLING_API_KEY"]
''',
    '''

def auth_headers(token: str) -> dict[str, str]:
    # The token comes from the vault at start-up; never log it.
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}
''',
    '''

class LedgerClient:
    """Posts journal entries to the ledger service."""

    def __init__(self, base_url: str, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()

    def post(self, entry: dict) -> dict:
        response = self.session.post(f"{self.base_url}/entries", json=entry, timeout=10)
        response.raise_for_status()
        return response.json()
''',
    '''

def load_settings(path: str) -> dict:
    """Read the settings file; environment variables win over it."""
    import json

    with open(path) as handle:
        settings = json.load(handle)
    settings["password"] = os.environ.get("DB_PASSWORD", settings.get("password"))
    settings["token"] = get_secret("billing/token")
    return settings
''',
    '''

MAX_BATCH = 500
TIMEOUT_S = 30
API_VERSION = "2024-06-01"
USER_AGENT = "billing-worker/3.2.1 (+https://example.com/bot)"
DEFAULT_REGION = "eu-west-1"
''',
    '''

def mask(secret: str, keep: int = 4) -> str:
    """`sk_live_...1234`: enough to tell keys apart in a log."""
    return "*" * max(0, len(secret) - keep) + secret[-keep:]
''',
    '''

@dataclass
class Invoice:
    number: str
    amount_cents: int
    currency: str = "EUR"
    lines: list[dict] = field(default_factory=list)

    def total(self) -> int:
        return sum(line["amount_cents"] for line in self.lines) or self.amount_cents
''',
    '''

def parse_duration(text: str) -> float:
    """'1h30m' -> 5400.0"""
    units = {"h": 3600, "m": 60, "s": 1}
    total, number = 0.0, ""
    for char in text:
        if char.isdigit() or char == ".":
            number += char
        else:
            total += float(number) * units[char]
            number = ""
    return total
''',
    '''

KEY_PREFIX = "billing:v2:"
CACHE_KEYS = {"invoice": KEY_PREFIX + "invoice:{id}", "customer": KEY_PREFIX + "customer:{id}"}
password_prompt = "Enter your password"
token_url = "https://auth.example.com/oauth/token"
''',
]


def planted_corpus(seed: int = 7, per_kind: int = 8) -> list[PlantedFile]:
    """Files holding `per_kind` plants of every kind (secrets and PII), three to six a file."""
    rng = random.Random(seed)
    kinds = [k for k in SECRET_KINDS + PII_KINDS for _ in range(per_kind)]
    rng.shuffle(kinds)
    files, n = [], 0
    while kinds:
        take = kinds[: rng.randint(3, 6)]
        kinds = kinds[len(take) :]
        text = _HEADER.format(doc=rng.choice(_DOCS))
        plants = []
        for kind in take:
            text += rng.choice(BOILERPLATE) + "\n\n"
            statement, v, at = plant_statement(kind, rng)
            plants.append(Plant(kind, v, len(text) + at, len(text) + at + len(v)))
            text += statement
        text += rng.choice(BOILERPLATE)
        files.append(PlantedFile(f"planted_{n:03d}.py", text, tuple(plants)))
        n += 1
    return files


def clean_corpus(seed: int = 8, files: int = 12) -> list[str]:
    """Files of the same ordinary code with nothing planted."""
    rng = random.Random(seed)
    return [_HEADER.format(doc=rng.choice(_DOCS)) + "\n\n".join(rng.sample(BOILERPLATE, 7)) for _ in range(files)]
