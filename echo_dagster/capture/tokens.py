"""Per-tenant bearer tokens for the capture endpoint, kept as SHA-256 hashes only.

Tokens are 256 random bits, so a fast hash is enough: nothing short enough to guess stands behind
it. The file (`$ECHO_HOME/capture/tokens.json` by default) is re-read when it changes, so tokens
are added or revoked without a restart. While the file cannot be read, `tenant_for` raises
`TokenFileError` (the endpoint refuses every post with 503 rather than trust an old table, which
would keep revoked tokens alive) and `problem()` says why.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path

from echo_dagster.clients.records import pseudonym
from echo_dagster.watched import FileProblem, WatchedFile

PREFIX = "echo_"


def token_user(client: str, token: str) -> str:
    """The pseudonymous user of a served completion whose request names none (Tabby's agent and
    most OpenAI clients send no user): the token's, so that one token per developer keeps each
    developer's files apart and lets one opt out (`user:<id>`)."""
    return pseudonym(client, "token:" + _hash(token))


class TokenFileError(FileProblem):
    pass


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._by_hash = WatchedFile(self.path, lambda _: {e["sha256"]: e["tenant_id"] for e in self._entries()},
                                    (TokenFileError,))

    def add(self, tenant_id: str) -> str:
        """A new token for `tenant_id`: returned once, only its hash is written."""
        if not tenant_id or not tenant_id.strip():
            raise ValueError("a token needs a tenant id")
        token = PREFIX + secrets.token_urlsafe(32)
        entries = self._entries()
        entries.append({"tenant_id": tenant_id, "sha256": _hash(token),
                        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        self._write(entries)
        return token

    def revoke(self, tenant_id: str) -> int:
        entries = self._entries()
        kept = [e for e in entries if e["tenant_id"] != tenant_id]
        self._write(kept)
        return len(entries) - len(kept)

    def tenant_for(self, token: str) -> str | None:
        digest = _hash(token)
        found = None
        for known, tenant in self._by_hash.value().items():  # every entry compared, in constant time each
            if hmac.compare_digest(known, digest):
                found = tenant
        return found

    def problem(self) -> TokenFileError | None:
        return self._by_hash.problem()

    def _entries(self) -> list[dict]:
        if not self.path.is_file():
            return []
        expected = 'expected {"tokens": [{"tenant_id": ..., "sha256": ...}, ...]} as `echo-dagster token add` writes'
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
            raise TokenFileError(f"{self.path}: not JSON ({err}); {expected}", self.path) from None
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or not all(
                isinstance(e, dict) and isinstance(e.get("sha256"), str) and isinstance(e.get("tenant_id"), str)
                for e in tokens):
            raise TokenFileError(f"{self.path}: {expected}", self.path)
        return tokens

    def _write(self, entries: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"tokens": entries}, f, indent=1)
        os.replace(tmp, self.path)
