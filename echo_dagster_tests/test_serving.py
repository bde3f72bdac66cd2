"""Serving the champion: Tabby's and OpenAI's completion APIs, capture at the source, the swap at
promotion under load, tenant policies. A tiny random model: these test the serving, not the model."""

import json
from pathlib import Path
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone

import httpx
import pytest
from starlette.testclient import TestClient

from echo_dagster import tenancy, warehouse
from echo_dagster.capture.server import build_app, build_completions
from echo_dagster.capture.tokens import TokenStore, token_user
from echo_dagster.completion import CompletionRequest
from echo_dagster.harvest.partition import refine_partition
from echo_dagster.ingest.raw_sessions import ingest_partition
from echo_dagster.landing import LocalLandingStore
from echo_dagster.serving import protocols
from echo_dagster.serving.batcher import Job, final_text, visible_text
from echo_dagster.serving.service import ServeSettings
from echo_dagster.training.registry import Registry
from echo_dagster_tests.serving_fixtures import running_server, tiny_checkpoint

FILE_BEFORE = "import os\n\n\ndef add(a, b):\n    return a"
FILE_AFTER = "\n\n\ndef sub(a, b):\n    return a - b\n"


def _landed(home) -> list[dict]:
    return [json.loads(line) for f in sorted((home / "landing").rglob("*.jsonl")) for line in f.read_text().splitlines()]


@contextmanager
def serving_client(echo_home, tiny_model_dir):
    """An in-process app serving the tiny model, with a token for tenants acme and initech."""
    store = TokenStore(echo_home / "capture" / "tokens.json")
    tokens = {t: store.add(t) for t in ("acme", "initech")}
    completions = build_completions(str(tiny_model_dir), str(echo_home / "registry"), ServeSettings(poll_s=0.1))
    app = build_app(str(echo_home / "landing"), echo_home / "capture" / "tokens.json", "n1",
                    completions=completions)
    with TestClient(app) as client:
        yield client, {t: {"Authorization": f"Bearer {tok}"} for t, tok in tokens.items()}


@pytest.fixture
def served(echo_home, tiny_model_dir):
    with serving_client(echo_home, tiny_model_dir) as served:
        yield served


def tabby(prefix: str, suffix: str = "", path: str = "calc.py") -> dict:
    return {"language": "python", "segments": {"prefix": prefix, "suffix": suffix, "filepath": path}}


def test_a_proposal_streams_only_what_cannot_be_taken_back():
    job = Job(CompletionRequest("x = foo("), model=None, max_new_tokens=8, stop=("##",))
    assert visible_text(job, "a, b)  ") == "a, b)"  # trailing blanks are stripped at the end
    assert visible_text(job, "a, b) #") == "a, b)"  # may be the start of the stop string
    assert visible_text(job, "a, b) ## c") == "a, b)" and final_text(job, "a, b) ## c", 4) == "a, b)"
    assert visible_text(job, "caf\ufffd") == "caf"  # half a character
    assert visible_text(job, "a)\nnext") == "a)" == final_text(job, "a)\nnext", 4)
    block = Job(CompletionRequest("def f():\n    "), model=None, max_new_tokens=8)
    assert visible_text(block, "return 1\n") == ""  # a block is sent whole


def test_requests_a_client_gets_wrong_are_refused_with_what_to_fix():
    for body, problem in ((b'{"segments": {}}', "segments.'prefix'"), (b'{"language": "python"}', "'prompt'"),
                          (b'{"prompt": "x", "n": 3}', "'n' and 'best_of'"),
                          (b'{"prompt": "x", "max_tokens": -1}', "'max_tokens'"),
                          (b'{"prompt": "x", "stop": ["' + b"#" * 65 + b'"]}', "at most 64 characters"),
                          (b"{", "not JSON"), (b"[" * 100_000, "not JSON")):
        with pytest.raises(protocols.ProtocolError, match=problem):
            protocols.completion_request(body)
    assert protocols.completion_request(b'{"prompt": ["x = 1"]}').request.prefix == "x = 1"
    assert protocols.is_tabby_event({"type": "select", "completion_id": "cmpl-1"})
    assert not protocols.is_tabby_event({"schema_version": 1, "event": "completion_accepted", "completion_id": "c"})


def test_tabby_api_serves_and_its_events_become_decisions(served, echo_home):
    client, auth = served
    assert client.get("/v1/health").json()["model"]
    assert client.get("/v1beta/server_setting").status_code == 200
    assert client.post("/v1/completions", json=tabby(FILE_BEFORE)).status_code == 401
    assert client.post("/v1/completions", headers=auth["acme"], json={"segments": {}}).status_code == 400
    first = client.post("/v1/completions", headers=auth["acme"], json=tabby(FILE_BEFORE, FILE_AFTER)).json()
    second = client.post("/v1/completions", headers=auth["acme"], json=tabby("import o", "\n", "b.py")).json()
    assert first["id"].startswith("cmpl-") and first["choices"][0]["index"] == 0
    # Another tenant cannot decide acme's completion; a view decides nothing.
    for who, kind in (("initech", "select"), ("acme", "view")):
        answer = client.post("/v1/events", headers=auth[who], json={"type": kind, "completion_id": first["id"],
                                                                    "choice_index": 0})
        assert answer.json()["ignored"] == 1
    line = client.post("/v1/events?select_kind=line", headers=auth["acme"],
                       json={"type": "select", "completion_id": first["id"], "choice_index": 0, "view_id": "v"})
    assert line.json()["accepted"] == 1
    client.post("/v1/events", headers=auth["acme"], json={"type": "dismiss", "completion_id": second["id"]})
    # Schema-v1 events still post to the same path.
    plain = client.post("/v1/events", headers=auth["acme"], content=b'{"schema_version": 1}')
    assert plain.status_code == 400 and plain.json()["errors"]
    events = {(e["event"], e["completion_id"]): e for e in _landed(echo_home) if "completion_id" in e}
    shown = events["completion_shown", first["id"]]
    assert shown["prefix"] == FILE_BEFORE and shown["suffix"] == FILE_AFTER and shown["tenant_id"] == "acme"
    # The landing zone names the model as the server knows it; a client sees its name only.
    assert shown["proposal"] == first["choices"][0]["text"] and Path(shown["model"]).name == served_model(client, auth["acme"])
    accepted = events["completion_accepted", first["id"]]
    assert accepted["accepted_text"] == shown["proposal"].split("\n")[0]
    assert events["completion_rejected", second["id"]]["reason"] == "dismissed"
    assert len(events) == 4


def served_model(client, auth: dict) -> str:
    return client.get("/healthz", headers=auth).json()["serving"]["model"]


def test_an_opted_out_user_is_served_and_nothing_of_theirs_is_kept(served, echo_home):
    client, auth = served
    # The agent names no user: the token's pseudonym is the user.
    token = auth["acme"]["Authorization"].split()[1]
    (echo_home / "opt_out.txt").write_text(f"user:{token_user('tabby', token)}\n")
    answer = client.post("/v1/completions", headers=auth["acme"], json=tabby(FILE_BEFORE)).json()
    client.post("/v1/events", headers=auth["acme"], json={"type": "select", "completion_id": answer["id"]})
    assert answer["choices"] and _landed(echo_home) == []


@pytest.mark.parametrize("engine", ["transformers", "ctranslate2"])
def test_the_openai_client_gets_completions_with_a_suffix_and_streamed(echo_home, tiny_model_dir, engine):
    import openai

    token = TokenStore(echo_home / "capture" / "tokens.json").add("acme")
    with running_server(echo_home, tiny_model_dir, echo_home / "registry", ServeSettings(engine=engine)) as (url, _):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)
        [model] = [m.id for m in client.models.list().data]
        whole = client.completions.create(model=model, prompt="x = foo(", suffix=")\n", max_tokens=6)
        assert whole.model == model and whole.choices[0].finish_reason in ("stop", "length")
        chunks = list(client.completions.create(model=model, prompt="x = foo(", suffix=")\n", max_tokens=6,
                                                stream=True))
        assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text  # greedy: the same text
        assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
        with pytest.raises(openai.BadRequestError, match="best_of"):
            client.completions.create(model=model, prompt="x", n=2)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
    shown = [e for e in _landed(echo_home) if e["event"] == "completion_shown"]
    assert len(shown) == 2 and {e["suffix"] for e in shown} == {")\n"} and shown[0]["session_id"].startswith("openai:")


@pytest.mark.parametrize("engine", ["transformers", "ctranslate2"])
def test_a_promotion_under_load_swaps_the_model_with_no_failed_request(echo_home, tiny_model_dir, engine):
    root = echo_home / "registry"
    for name, seed in (("echo-a", 1), ("echo-b", 2)):
        tiny_checkpoint(root, name, tiny_model_dir, seed=seed)
    registry = Registry(root)
    registry.set_champion("echo-a", "test")
    token = TokenStore(echo_home / "capture" / "tokens.json").add("acme")
    answers: list[tuple[int, int, str]] = []  # (client, status, model)
    stop = threading.Event()

    def load(n: int, url: str) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            while not stop.is_set():
                r = http.post("/v1/completions", json={"prompt": f"value_{n} = compute(", "max_tokens": 4})
                answers.append((n, r.status_code, r.json().get("model") if r.status_code == 200 else r.text))

    with running_server(echo_home, tiny_model_dir, root, ServeSettings(poll_s=0.1, engine=engine)) as (url, completions):
        clients = [threading.Thread(target=load, args=(n, url)) for n in range(6)]
        for t in clients:
            t.start()
        while len(answers) < 30:
            time.sleep(0.05)
        registry.set_champion("echo-b", "promoted during the load test")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(m == "echo-b" for _, _, m in answers[-6:]):
            time.sleep(0.05)
        settled = len(answers)
        while len(answers) < settled + 30:
            time.sleep(0.05)
        stop.set()
        for t in clients:
            t.join()
        swaps = completions.shared.swaps
    assert [status for _, status, _ in answers if status != 200] == []
    models = [m for _, _, m in answers]
    assert models[0] == "echo-a" and models[-1] == "echo-b"
    for n in range(6):  # each client: echo-a, then echo-b from its first answer by echo-b on
        seen = [m for c, _, m in answers if c == n]
        assert seen == sorted(seen)
    assert [(s["from"], s["to"]) for s in swaps] == [("echo-a", "echo-b")]


def test_tenant_policies_choose_the_model_each_tenant_is_served(echo_home, tiny_model_dir):
    root = echo_home / "registry"
    tiny_checkpoint(root, "echo-shared", tiny_model_dir, seed=1)
    tiny_checkpoint(root, "echo-initech", tiny_model_dir, seed=2, tenant="initech")
    registry = Registry(root)
    registry.set_champion("echo-shared", "test")
    with pytest.raises(ValueError, match="trained for tenant 'initech' alone"):
        registry.set_champion("echo-initech", "test")  # an own model never serves others
    registry.set_champion("echo-initech", "test", tenant="initech")
    policy = echo_home / "tenant_policy.json"
    tenancy.set_policy(policy, "initech", "own")
    tenancy.set_policy(policy, "hooli", "excluded")
    store = TokenStore(echo_home / "capture" / "tokens.json")
    auth = {t: {"Authorization": f"Bearer {store.add(t)}"} for t in ("acme", "initech", "hooli", "newco")}
    with running_server(echo_home, tiny_model_dir, root) as (url, _):
        def model(tenant: str) -> str:
            return httpx.post(f"{url}/v1/completions", headers=auth[tenant], json={"prompt": "x = ("}).json()["model"]

        assert {t: model(t) for t in auth} == {"acme": "echo-shared", "initech": "echo-initech",
                                               "hooli": "echo-shared", "newco": "echo-shared"}
        tenancy.set_policy(policy, "newco", "own")  # a new own tenant: the base until it has a champion
        assert model("newco") == tiny_model_dir.name
        policy.write_text("{broken")
        refused = httpx.post(f"{url}/v1/completions", headers=auth["acme"], json={"prompt": "x"})
        assert refused.status_code == 503 and "tenant policy" in refused.json()["error"]["message"]


def test_served_completions_come_back_through_the_harvest_as_what_the_user_kept(echo_home, tiny_model_dir):
    with serving_client(echo_home, tiny_model_dir) as (client, auth):
        first = client.post("/v1/completions", headers=auth["acme"], json=tabby(FILE_BEFORE, FILE_AFTER)).json()
        client.post("/v1/events", headers=auth["acme"], json={"type": "select", "completion_id": first["id"]})
        # The user fixes the proposal and types on; a later request in the file shows what stands there.
        kept = " + b"
        later = "import os\n\n\ndef add(a, b):\n    return a" + kept + FILE_AFTER + "\n\ndef mul(a, b):\n    return a"
        client.post("/v1/completions", headers=auth["acme"], json=tabby(later, "\n"))
    # The server stopped: its open completions are closed.
    # What raw_sessions and refined_targets do for the day (today's partition opens tomorrow).
    harvest_today(echo_home)
    with warehouse.connect(echo_home / "wh.duckdb", read_only=True) as con:
        row = con.execute("SELECT decision, target, reason FROM refined_targets WHERE completion_id = ?",
                          [first["id"]]).fetchone()
    assert row == ("accepted", kept, None)


def harvest_today(echo_home) -> None:
    day = datetime.now(timezone.utc).date()
    ingest_partition(LocalLandingStore(echo_home / "landing"), day, echo_home / "wh.duckdb")
    with warehouse.connect(echo_home / "wh.duckdb") as con:
        refine_partition(con, day)


def test_an_openai_clients_completion_is_decided_by_what_its_file_shows_next(echo_home, tiny_model_dir):
    with serving_client(echo_home, tiny_model_dir) as (client, auth):
        first = client.post("/v1/completions", headers=auth["acme"],
                            json={"prompt": FILE_BEFORE, "suffix": FILE_AFTER, "max_tokens": 8}).json()
        later = FILE_BEFORE + " + b" + FILE_AFTER + "\n\ndef mul(a, b):\n    return a"
        client.post("/v1/completions", headers=auth["acme"], json={"prompt": later, "suffix": "\n", "max_tokens": 8})
        # Another file: the proposal is kept, and a comment added after it.
        before, after = "import json\n\n\ndef load(path):\n    with open(path) as f:\n        return json.", \
            "\n\n\ndef dump(obj, path):\n    pass\n"
        kept = client.post("/v1/completions", headers=auth["acme"],
                           json={"prompt": before, "suffix": after, "max_tokens": 8}).json()
        proposal = kept["choices"][0]["text"]
        assert proposal and "\n" not in proposal
        client.post("/v1/completions", headers=auth["acme"],
                    json={"prompt": before + proposal + "  # kept" + after + "\n\nx = (", "suffix": ")\n"})
    harvest_today(echo_home)
    with warehouse.connect(echo_home / "wh.duckdb", read_only=True) as con:
        rows = {cid: (decision, target, kind) for cid, decision, target, kind in con.execute(
            "SELECT completion_id, decision, target, source_kind FROM refined_targets").fetchall()}
    # The random model's proposal is not what stands at the cursor: typed over, then rewritten.
    assert first["choices"][0]["text"] != " + b"
    assert rows[first["id"]] == ("rejected", " + b", "rejected_rewritten")
    assert rows[kept["id"]] == ("accepted", proposal + "  # kept", "accepted_edited")
    [decision] = [e for e in _landed(echo_home) if e["event"] == "completion_rejected"]
    assert decision["reason"] == "typed_over" and decision["completion_id"] == first["id"]
