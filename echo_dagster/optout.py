"""The opt-out list: users and tenants whose experience is never kept.

A text file, one entry a line: `user:<id>` or `tenant:<id>`, the id being the rest of the line (it
may hold spaces and any Unicode, and is compared with the id as events carry it, after JSON
decoding). Blank lines and lines starting with `#` are ignored. A line of any other shape is an
error that names the file and the line: a list that cannot be read must stop whoever relies on it,
never be half-applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from echo_dagster.watched import FileProblem, WatchedFile

KINDS = ("user", "tenant")


class OptOutError(FileProblem):
    pass


@dataclass(frozen=True)
class OptOut:
    users: frozenset[str] = frozenset()
    tenants: frozenset[str] = frozenset()

    def covers(self, user_id: str | None, tenant_id: str | None) -> bool:
        return user_id in self.users or tenant_id in self.tenants

    def __bool__(self) -> bool:
        return bool(self.users or self.tenants)

    def subjects(self) -> list[tuple[str, str]]:
        """(column, id) pairs, tenants first: `("tenant_id", "acme")`, `("user_id", "zoë")`."""
        return [("tenant_id", t) for t in sorted(self.tenants)] + [("user_id", u) for u in sorted(self.users)]


def parse(text: str, source: str = "<opt-out list>") -> OptOut:
    found: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        kind, sep, value = line.partition(":")
        value = value.strip()
        if not sep or kind not in KINDS or not value:
            raise OptOutError(f"{source}:{number}: expected 'user:<id>' or 'tenant:<id>', got {raw[:80]!r}", source)
        found[kind].add(value)
    return OptOut(frozenset(found["user"]), frozenset(found["tenant"]))


def load(path: str | Path) -> OptOut:
    """The list in `path`; a missing file is an empty list."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return OptOut()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise OptOutError(f"{path}: not UTF-8 ({err.reason} at byte {err.start})", path) from None
    return parse(text, str(path))


def watch(path: str | Path) -> WatchedFile[OptOut]:
    """The list of a file that may change while a server runs: `.value()` is the current list, or
    raises OptOutError while the file is broken, so that the caller refuses to accept data it cannot
    check; `.problem()` says why (for a health endpoint)."""
    return WatchedFile(path, load, (OptOutError,))
