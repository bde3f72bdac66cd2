"""The simulator's sessions as Continue and Tabby would have logged them, to measure how much the
importers recover from logs that never record what the user kept.

Only what those clients write is kept: each completion's window of the document around the cursor
(Continue: about 1,200 characters before and 800 after, its default 1,024-token prompt at 30% /
20%; Tabby: 20 lines before and 20 after, its client's default), the proposal, the outcome; no
snapshots. Whole lines are cut from the far ends, as both clients prune.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

from echo_dagster.clients.continue_dev import read_continue
from echo_dagster.clients.implicit import to_events
from echo_dagster.clients.tabby import read_tabby
from echo_dagster.harvest.refine import refine_session
from echo_dagster.metrics import exact_match, first_lines

CONTINUE_WINDOW_CHARS = (1200, 800)
TABBY_WINDOW_LINES = (20, 20)
_CONTINUE_OPTIONS = {"disable": False, "useFileSuffix": True, "maxPromptTokens": 1024, "debounceDelay": 350,
                     "maxSuffixPercentage": 0.2, "prefixPercentage": 0.3, "multilineCompletions": "auto",
                     "slidingWindowPrefixPercentage": 0.75, "slidingWindowSize": 500, "useCache": True,
                     "onlyMyCode": True, "useRecentlyEdited": True, "useImports": True}


def _outcomes(events: list[dict]) -> list[tuple[dict, dict | None]]:
    decisions = {e["completion_id"]: e for e in events if e["event"] in ("completion_accepted", "completion_rejected")}
    return [(e, decisions.get(e["completion_id"])) for e in events if e["event"] == "completion_shown"]


def continue_log(events: list[dict]) -> list[str]:
    """Lines of `dev_data/0.2.0/autocomplete.jsonl`, in the order Continue appends them."""
    lines = []
    for shown, decision in _outcomes(events):
        if decision is None:
            continue  # Continue logs an outcome only
        prefix, suffix = _char_window(shown["prefix"], shown["suffix"], *CONTINUE_WINDOW_CHARS)
        lines.append((decision["ts"], json.dumps({
            "eventName": "autocomplete", "schema": "0.2.0", "timestamp": decision["ts"], "userId": shown["user_id"],
            "userAgent": "Visual Studio Code/1.95.0 (Continue/1.0.0)", "selectedProfileId": "local",
            **_CONTINUE_OPTIONS, "accepted": decision["event"] == "completion_accepted",
            "time": shown["latency_ms"], "prefix": prefix, "suffix": suffix,
            "prompt": f"<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>", "completion": shown["proposal"],
            "modelProvider": "openai", "modelName": shown["model"], "cacheHit": False,
            "filepath": f"file:///home/dev/{shown['repo']}/{shown['path']}", "gitRepo": shown["repo"],
            "completionId": shown["completion_id"], "uniqueId": shown["user_id"],
        })))
    return [line for _, line in sorted(lines, key=lambda x: x[0])]


def tabby_log(events: list[dict]) -> dict[str, list[str]]:
    """`events/YYYY-MM-DD.json` files: name -> lines."""
    logged: list[tuple[datetime, str]] = []
    for shown, decision in _outcomes(events):
        at = _parse_ts(shown["ts"])
        requested = at - timedelta(milliseconds=shown["latency_ms"] or 0)
        prefix, suffix = _line_window(shown["prefix"], shown["suffix"], *TABBY_WINDOW_LINES)
        cid = f"cmpl-{shown['completion_id']}"
        logged.append((requested, {"completion": {
            "completion_id": cid, "language": shown["language"], "prompt": prefix,
            "segments": {"prefix": prefix, "suffix": suffix, "filepath": shown["path"], "git_url": shown["repo"]},
            "choices": [{"index": 0, "text": shown["proposal"]}], "user": shown["user_id"]}}))
        logged.append((at, {"view": {"completion_id": cid, "choice_index": 0}}))
        if decision is None:
            continue
        decided = _parse_ts(decision["ts"])
        if decision["event"] == "completion_accepted":
            if decision["accepted_text"] != shown["proposal"]:  # a line at a time
                for _ in decision["accepted_text"].splitlines():
                    logged.append((decided, {"select": {"completion_id": cid, "choice_index": 0, "kind": "line"}}))
            else:
                logged.append((decided, {"select": {"completion_id": cid, "choice_index": 0}}))
        elif decision["reason"] in ("dismissed", "escaped"):
            logged.append((decided, {"dismiss": {"completion_id": cid, "choice_index": 0}}))
    files: dict[str, list[str]] = defaultdict(list)
    for at, event in sorted(logged, key=lambda x: x[0]):
        ms = int(at.timestamp() * 1000)
        files[f"{at.date().isoformat()}.json"].append(json.dumps({"ts": ms, "event": event}))
    return dict(files)


def _char_window(prefix: str, suffix: str, before: int, after: int) -> tuple[str, str]:
    if len(prefix) > before:
        cut = prefix.find("\n", len(prefix) - before)
        prefix = prefix[cut + 1:] if cut >= 0 else prefix[-before:]
    if len(suffix) > after:
        cut = suffix.rfind("\n", 0, after)
        suffix = suffix[: cut + 1] if cut >= 0 else suffix[:after]
    return prefix, suffix


def _line_window(prefix: str, suffix: str, before: int, after: int) -> tuple[str, str]:
    head = prefix.split("\n")
    tail = suffix.split("\n")
    return "\n".join(head[-(before + 1):]), "\n".join(tail[: after + 1])


def _parse_ts(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def measure_recovery(events: list[dict], truth: list[dict]) -> dict:
    """How many completions get a final state, and a right one, from each client's log against
    the schema-v1 logs (with their snapshots) of the same sessions and the simulator's truth.
    `events`: the simulator's schema-v1 events (duplicates already dropped); `truth`: its rows."""
    truths = {t["completion_id"]: t for t in truth if t["type"] == "completion"}
    tabby = tabby_log(events)
    # Each log's events, and how its completion ids map back to the simulator's.
    logs: dict[str, tuple[list[dict], Callable[[str], str]]] = {"schema v1 (with snapshots)": (events, str)}
    for client, lines, read in (("continue", continue_log(events), read_continue),
                                ("tabby", [line for name in sorted(tabby) for line in tabby[name]], read_tabby)):
        result = read((f"{client}:{n}", line) for n, line in enumerate(lines, 1))
        logs[client] = (to_events(result.completions, "t").events, lambda cid: cid.removeprefix("cmpl-"))
    figures = {}
    for name, (log, sim_id) in logs.items():
        rows = {sim_id(r["completion_id"]): r for r in _refine_all(log)}
        figures[name] = {decision: _score(rows, [t for t in truths.values() if t["accepted"] == accepted])
                         for decision, accepted in (("accepted", True), ("rejected", False))}
    return figures


def _refine_all(events: list[dict]) -> list[dict]:
    keys = ("completion_id", "prefix", "suffix", "proposal", "accepted_text", "document", "trigger", "model",
            "reason", "repo", "path", "language")
    sessions: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        sessions[e["session_id"]].append({**dict.fromkeys(keys), **e, "ts": _parse_ts(e["ts"])})
    return [row for s in sessions.values() for row in refine_session(sorted(s, key=lambda e: e["ts"]))]


def _score(rows: dict[str, dict], truths: list[dict]) -> dict:
    with_target = [(rows[t["completion_id"]], t) for t in truths if rows.get(t["completion_id"], {}).get("target")]
    right = sum(exact_match(r["target"], first_lines(t["truth"], len(r["target"].splitlines()))) for r, t in with_target)
    n = len(truths)
    return {"completions": n, "with_final_state": len(with_target), "right": right,
            "share_with_final_state": round(len(with_target) / n, 4) if n else None,
            "share_right": round(right / n, 4) if n else None}
