"""What the readers of other clients' logs produce: one record per completion shown, whatever the
client, and the bookkeeping of the lines they could not use."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath

from echo_dagster.languages import EXTENSIONS

PROBLEMS_KEPT = 20  # lines reported with their reason in a summary; all are counted


@dataclass(frozen=True)
class ClientCompletion:
    client: str  # "continue" or "tabby": the prefix of every id made from this record
    completion_id: str  # the client's own id
    shown_ts: datetime
    decided_ts: datetime
    user_id: str  # pseudonymous (`pseudonym`)
    path: str | None
    repo: str | None
    language: str | None
    client_version: str | None
    model: str | None
    prefix: str  # the client's window of the document before the cursor
    suffix: str
    proposal: str
    latency_ms: float | None
    decision: str | None  # "accepted", "rejected" or None where the log does not tell
    accepted_text: str | None = None
    reject_reason: str | None = None

    @property
    def stream(self) -> tuple:
        """Requests that can see each other's document: one user's, in one file of one repository
        (or, where the client logs no path, in one language)."""
        return (self.user_id, self.repo, self.path or f"<{self.language}>")


@dataclass
class ReadResult:
    completions: list[ClientCompletion] = field(default_factory=list)
    lines: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> lines (or completions) not mapped
    problems: list[dict] = field(default_factory=list)  # the first PROBLEMS_KEPT, with line numbers
    inferred: Counter = field(default_factory=Counter)  # what the reader had to infer, and how often

    def skip(self, reason: str, where: str, message: str) -> None:
        self.skipped[reason] += 1
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append({"at": where, "reason": reason, "message": message})


def pseudonym(client: str, raw: str | None) -> str:
    """Clients log account names, e-mails or auth tokens as the user: only a stable hash lands."""
    if not raw:
        return f"{client}-anonymous"
    return f"{client}-{hashlib.sha256(raw.encode()).hexdigest()[:16]}"


def language_of(path: str | None) -> str | None:
    return EXTENSIONS.get(PurePosixPath(path).suffix) if path else None


def local_path(uri_or_path: str | None) -> str | None:
    if not uri_or_path:
        return None
    return uri_or_path[len("file://"):] if uri_or_path.startswith("file://") else uri_or_path
