"""The train/eval split of files and users: one deterministic rule for the simulator, the filters
and evaluation, so that evaluation never sees a file that training saw."""

from __future__ import annotations

import hashlib

EVAL_SHARE = 0.2


def _split(key: str) -> str:
    return "eval" if hashlib.sha256(key.encode()).digest()[0] < 256 * EVAL_SHARE else "train"


def file_split(repo: str | None, path: str | None) -> str:
    return _split(f"file:{repo}/{path}")


def user_split(user_id: str) -> str:
    return _split(f"user:{user_id}")


def repo_of(path: str) -> str:
    """The repository a replayed file stands for: its first folder."""
    return path.split("/", 1)[0]
