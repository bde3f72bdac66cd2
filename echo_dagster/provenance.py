"""Where a figure comes from: the commit of the code that measured it, whether the tree had
changes not committed, and when — recorded beside the figure by the experiment, the eval report
and the benchmarks, so that a number can be traced to the code and reproduced."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def provenance(config: dict | None = None) -> dict:
    """{"commit": sha or None (not a git checkout), "dirty": bool or None, "measured_at": UTC time,
    "config": config}: `dirty` counts changes to tracked files and new files that git does not ignore, but for
    benchmark results."""
    commit = _git("rev-parse", "HEAD")
    # A benchmark's own result files (benchmarks/results) are not a change to the code that measured.
    status = _git("status", "--porcelain", "--untracked-files=normal", "--", ".",
                  ":(exclude)benchmarks/results") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status.strip()),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "config": config or {}}


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(_ROOT), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
