"""A client nobody here wrote: the npm package tabby-agent (the agent inside Tabby's IDE extensions),
driven headless as an editor drives it, against `echo-dagster serve` with the real embedded model.

The agent speaks JSON lines on stdio (`[id, {"func": ..., "args": [...]}]`, answered `[id, result]`;
`[0, {...}]` are its own events): in 1.5.0 only this mode posts view/select/dismiss events (its LSP
mode has no telemetry method). `make test` installs it with npm into the venv.
"""

import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from echo_dagster import warehouse
from echo_dagster.capture.tokens import TokenStore
from echo_dagster_tests.serving_fixtures import running_server
from echo_dagster_tests.test_serving import harvest_today

REPO = Path(__file__).resolve().parents[1]
AGENT = Path(os.environ.get("TABBY_AGENT", REPO / ".venv" / "npm" / "node_modules" / "tabby-agent" / "dist" / "cli.js"))

BEFORE = "import math\n\n\ndef add(a, b):\n    return "
AFTER = "\n\n\ndef area(r):\n    return math.pi * r * r\n"


class Agent:
    """tabby-agent in JSON-lines mode, in a HOME of its own."""

    def __init__(self, home: Path, endpoint: str, token: str):
        config = home / ".tabby-client" / "agent" / "config.toml"
        config.parent.mkdir(parents=True)
        # No usage tracking: the agent would post to app.tabbyml.com.
        config.write_text(f'[server]\nendpoint = "{endpoint}"\ntoken = "{token}"\n\n'
                          '[anonymousUsageTracking]\ndisable = true\n\n[logs]\nlevel = "silent"\n')
        self.process = subprocess.Popen(["node", str(AGENT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, cwd=home, env=os.environ | {"HOME": str(home)})
        self.answers: queue.Queue = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            if line.startswith(b"["):
                message = json.loads(line)
                if message[0] != 0:  # 0: the agent's own events (status changes)
                    self.answers.put(message)

    def call(self, func: str, *args, timeout: float = 60):
        self.next_id += 1
        self.process.stdin.write((json.dumps([self.next_id, {"func": func, "args": list(args)}]) + "\n").encode())
        self.process.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            rid, result = self.answers.get(timeout=max(0.01, deadline - time.monotonic()))
            if rid == self.next_id:
                return result

    def complete(self, text: str, cursor: int) -> dict:
        request = {"filepath": "/work/calc.py", "language": "python", "text": text, "position": cursor,
                   "manually": True}
        return self.call("provideCompletions", request, {"signal": True})

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)  # the agent finalizes and exits
        self.process.wait(timeout=10)


def test_tabbys_agent_gets_the_champions_completions_and_its_users_fix_comes_back_as_the_target(
        echo_home, embedded_model_dir, tmp_path):
    assert AGENT.is_file(), f"{AGENT} is missing: `make test` installs tabby-agent with npm"
    token = TokenStore(echo_home / "capture" / "tokens.json").add("acme")
    with running_server(echo_home, embedded_model_dir, echo_home / "registry") as (url, _):
        agent = Agent(tmp_path / "editor-home", url, token)
        try:
            assert agent.call("initialize", {"clientProperties": {"session": {"client": "pytest-editor"}}}) is True
            assert agent.call("getStatus") == "ready"
            # The user opens calc.py and asks for a completion at the cursor.
            first = agent.complete(BEFORE + AFTER, len(BEFORE))
            [choice] = first["choices"]
            assert choice["text"].strip()
            agent.call("postEvent", {"type": "view", "completion_id": first["id"], "choice_index": 0,
                                     "view_id": "v1"})
            assert agent.call("postEvent", {"type": "select", "completion_id": first["id"], "choice_index": 0,
                                            "view_id": "v1", "elapsed": 400}) is True
            # Accepted, then fixed the way users fix proposals; they type on and ask further down.
            kept = "int(a) + int(b)"
            text = BEFORE + kept + AFTER + "\n\ndef mul(a, b):\n    return "
            second = agent.complete(text, len(text))
            if second["choices"]:
                agent.call("postEvent", {"type": "dismiss", "completion_id": second["id"], "choice_index": 0,
                                         "view_id": "v2", "elapsed": 300})
        finally:
            agent.close()
    harvest_today(echo_home)
    with warehouse.connect(echo_home / "wh.duckdb", read_only=True) as con:
        rows = con.execute("SELECT completion_id, proposal, decision, target, source_kind, reason "
                           "FROM refined_targets ORDER BY completion_id").fetchall()
    by_id = {r[0]: r[1:] for r in rows}
    proposal, decision, target, source_kind, reason = by_id[first["id"]]
    assert proposal.strip() and proposal.startswith(choice["text"].strip()[:1])
    assert (decision, target, reason) == ("accepted", kept, None)
    assert source_kind == ("accepted_unchanged" if proposal == kept else "accepted_edited")
    if second["choices"]:
        assert by_id[second["id"]][1] == "rejected"


@pytest.fixture(autouse=True)
def _node():
    if subprocess.run(["node", "--version"], capture_output=True).returncode != 0:
        pytest.fail("node is missing: tabby-agent needs Node.js 18 or newer")
