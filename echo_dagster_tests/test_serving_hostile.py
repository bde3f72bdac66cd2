"""The completion routes under attack: no input answers 500, one bad record never costs another
tenant its data, `/healthz` tells an anonymous client nothing, every documented field works on
every engine or is refused with a 400. A tiny random model: these test the serving, not the model."""

import json
import threading
import time
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timezone

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from echo_dagster import tenancy, warehouse
from echo_dagster.capture.app import CaptureSettings
from echo_dagster.capture.server import build_app, build_completions
from echo_dagster.capture.tokens import TokenStore
from echo_dagster.clients.records import ClientCompletion
from echo_dagster.events import MAX_LINE_BYTES
from echo_dagster.ingest.raw_sessions import ingest_partition
from echo_dagster.landing import LocalLandingStore
from echo_dagster.serving.service import ServeSettings
from echo_dagster.serving.upstream import UpstreamSettings
from echo_dagster.training.registry import Registry
from echo_dagster_tests.serving_fixtures import running_server, serving, tiny_checkpoint

SURROGATE = "\\ud800"  # as JSON writes it: an escape of half a surrogate pair
TENANTS = ("acme", "initech", "hooli")


def _landed(home) -> list[dict]:
    return [json.loads(line) for f in sorted((home / "landing").glob("20*/*.jsonl")) for line in f.open()]


def _tokens(home) -> dict[str, dict]:
    store = TokenStore(home / "capture" / "tokens.json")
    return {t: {"Authorization": f"Bearer {store.add(t)}"} for t in TENANTS}


@contextmanager
def _client(home, model_dir, engine="ctranslate2", capture=CaptureSettings(), **serve):
    """An in-process app on `engine` (`upstream`: a gateway to a second server of the tiny model)."""
    auth = _tokens(home)
    if engine != "upstream":
        completions = build_completions(str(model_dir), str(home / "registry"), ServeSettings(engine=engine, **serve))
        with TestClient(build_app(str(home / "landing"), home / "capture" / "tokens.json", "n1", capture,
                                  completions=completions)) as client:
            yield client, auth
        return
    upstream_token = TokenStore(home / "upstream" / "capture" / "tokens.json").add("gateway")
    # The upstream samples as vLLM does: seeded per request.
    with running_server(home / "upstream", model_dir, home / "upstream" / "registry",
                        ServeSettings(engine="transformers")) as (url, _):
        completions = build_completions(str(model_dir), str(home / "registry"), ServeSettings(**serve),
                                        UpstreamSettings(url, model_dir.name, api_key=upstream_token))
        with TestClient(build_app(str(home / "landing"), home / "capture" / "tokens.json", "n1",
                                  completions=completions)) as client:
            yield client, auth
        completions.close()


def _tabby(prefix="def add(a, b):\n    return a", suffix="\n", path="calc.py", **extra) -> dict:
    return {"language": "python", "segments": {"prefix": prefix, "suffix": suffix, "filepath": path}, **extra}


def _raw(body: dict, field: str) -> bytes:
    """`body` as JSON with a lone surrogate escape put at the end of `field` (dotted)."""
    text = json.dumps(body)
    *outer, name = field.split(".")
    value = body
    for part in outer:
        value = value[part]
    before = json.dumps({name: value[name]})[1:-1]
    assert text.count(before) == 1
    return text.replace(before, before[:-1] + SURROGATE + '"').encode()


def _harvest(home) -> tuple[Counter, Counter]:
    """raw_sessions of today: (events kept per tenant and type, quarantined lines per reason)."""
    day = datetime.now(timezone.utc).date()
    ingest_partition(LocalLandingStore(home / "landing"), day, home / "wh.duckdb")
    with warehouse.connect(home / "wh.duckdb", read_only=True) as con:
        kept = Counter(con.execute("SELECT tenant_id, event FROM raw_sessions").fetchall())
        quarantined = Counter(r for (r,) in con.execute("SELECT reason FROM quarantine").fetchall())
    return kept, quarantined


def test_a_lone_surrogate_in_any_field_is_a_400_and_every_other_tenants_completion_closes(echo_home,
                                                                                          tiny_model_dir):
    tabby_fields = ("language", "user", "segments.prefix", "segments.suffix", "segments.filepath", "segments.git_url")
    openai_fields = ("prompt", "suffix", "user", "language")
    with _client(echo_home, tiny_model_dir) as (client, auth):
        for tenant in ("initech", "hooli"):  # completions left open, in files of their own
            assert client.post("/v1/completions", headers=auth[tenant], json=_tabby(path=f"{tenant}.py")).status_code == 200
        answers = [client.post("/v1/completions", headers=auth["acme"], content=_raw(
            _tabby(user="dev", **{"segments": {"prefix": "x = (", "suffix": "\n", "filepath": "a.py",
                                                "git_url": "https://git/r"}}), field)) for field in tabby_fields]
        answers += [client.post("/v1/completions", headers=auth["acme"], content=_raw(
            {"prompt": "x = (", "suffix": "\n", "user": "dev", "language": "python"}, field)) for field in openai_fields]
        assert [a.status_code for a in answers] == [400] * 10
        assert all("surrogate" in a.text for a in answers)
        # Nothing of them was kept: the file of the first is served as before.
        assert client.post("/v1/completions", headers=auth["acme"], json=_tabby(path="a.py")).status_code == 200
        assert client.app.state.live.stats()["completions"] == 3
    kept, quarantined = _harvest(echo_home)  # the server stopped: every open completion closed
    assert {t: kept[t, "document_closed"] for t in TENANTS} == {"acme": 1, "initech": 1, "hooli": 1}
    assert quarantined == Counter()


@pytest.mark.parametrize("closed_by", ["sweep", "stop"])
def test_a_poisoned_open_completion_is_quarantined_alone_by_the_sweep_and_the_stop(echo_home, tiny_model_dir,
                                                                                   closed_by):
    """A record the server cannot write (a bug would be needed now: no route lets such text in)
    beside other tenants' open completions: each closes on its own."""
    capture = CaptureSettings(idle_close_s=1.0, sweep_s=0.2) if closed_by == "sweep" else CaptureSettings()
    with _client(echo_home, tiny_model_dir, capture=capture) as (client, auth):
        for tenant in ("acme", "initech"):
            assert client.post("/v1/completions", headers=auth[tenant], json=_tabby(path=f"{tenant}.py")).status_code == 200
        now = datetime.now(timezone.utc)
        poisoned = ClientCompletion("tabby", "cmpl-poison", now, now, "u", "p.py", None, "py\ud800", None, "m",
                                    "x = (", "\n", "1)", 1.0, None)
        client.app.state.live.add(poisoned, "hooli")
        assert client.post("/v1/completions", headers=auth["hooli"],
                           json=_tabby("x = (1)\n", "", path="p.py")).status_code == 200
        if closed_by == "sweep":
            for _ in range(150):
                if not client.app.state.live.stats()["completions"]:
                    break
                time.sleep(0.1)
            assert client.app.state.live.stats()["completions"] == 0
    kept, quarantined = _harvest(echo_home)
    assert kept["acme", "document_closed"] == 1 and kept["initech", "document_closed"] == 1
    assert kept["hooli", "completion_shown"] == 1  # the one served (the poisoned one was never written)
    assert quarantined == Counter({"bad_json": 1})  # the poison's close, alone
    with warehouse.connect(echo_home / "wh.duckdb", read_only=True) as con:
        assert all("cmpl-poison" in raw for (raw,) in con.execute("SELECT raw FROM quarantine").fetchall())


def test_healthz_tells_an_anonymous_client_only_that_it_is_up_and_a_tenant_only_its_own(echo_home, tiny_model_dir):
    with _client(echo_home, tiny_model_dir) as (client, auth):
        for tenant in TENANTS:
            client.post("/v1/completions", headers=auth[tenant], json=_tabby(path=f"{tenant}.py"))
        anonymous = client.get("/healthz")
        assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}
        assert client.get("/healthz", headers={"Authorization": "Bearer wrong"}).json() == {"status": "ok"}
        mine = client.get("/healthz", headers=auth["acme"])
        assert mine.json()["serving"]["served"] == 1 and mine.json()["open_completions"]["completions"] == 1
        assert "initech" not in mine.text and "hooli" not in mine.text and str(echo_home) not in mine.text
        # A broken tenant policy: refused completions, named by the file's name only.
        (echo_home / "tenant_policy.json").write_text("{broken")
        refused = client.post("/v1/completions", headers=auth["acme"], json=_tabby())
        assert refused.status_code == 503 and "tenant_policy.json" in refused.text and str(echo_home) not in refused.text
        assert client.get("/healthz", headers=auth["acme"]).json()["serving"]["problem"].startswith("the tenant policy")


@pytest.mark.parametrize("engine", ["transformers", "ctranslate2", "upstream"])
def test_every_documented_field_works_or_is_refused_with_a_400_and_integers_are_bounded(echo_home, tiny_model_dir,
                                                                                       engine):
    with _client(echo_home, tiny_model_dir, engine) as (client, auth):
        def ask(**fields):
            return client.post("/v1/completions", headers=auth["acme"],
                               json={"prompt": "x = foo(", "suffix": ")\n", "max_tokens": 4, **fields})

        sampled = [ask(temperature=2, seed=1) for _ in range(2)]
        if engine == "ctranslate2":
            assert [a.status_code for a in sampled] == [400, 400] and "cannot seed" in sampled[0].text
        else:
            assert [a.status_code for a in sampled] == [200, 200]
            assert sampled[0].json()["choices"][0]["text"] == sampled[1].json()["choices"][0]["text"]
        assert ask(temperature=1.5).status_code == 200  # unseeded sampling, every engine
        for fields in ({"stop": ["\n", ")"]}, {"user": "dev-1"}, {"stream": True}, {"seed": 7}, {"language": "python"}):
            assert ask(**fields).status_code == 200, fields
        huge = int("9" * 401)
        for field in ("max_tokens", "seed", "temperature"):
            answer = client.post("/v1/completions", headers=auth["acme"],
                                 content=json.dumps({"prompt": "x", field: huge}).encode())
            assert answer.status_code == 400 and "401 digits" in answer.text, (field, answer.text)
        tabby = client.post("/v1/completions", headers=auth["acme"], content=json.dumps(
            _tabby(temperature=0.5, seed=huge)).encode())
        assert tabby.status_code == 400 and "seed" in tabby.text


def test_streams_are_refused_before_their_headers_when_the_queue_is_full(echo_home, tiny_model_dir):
    token = TokenStore(echo_home / "capture" / "tokens.json").add("acme")
    answers: list[tuple[int, str]] = []
    with running_server(echo_home, tiny_model_dir, echo_home / "registry",
                        ServeSettings(engine="transformers", max_waiting=2, tenant_waiting=2)) as (url, _):
        def stream(n: int) -> None:
            with httpx.stream("POST", f"{url}/v1/completions", headers={"Authorization": f"Bearer {token}"},
                              json={"prompt": f"value_{n} = compute(", "max_tokens": 16, "stream": True},
                              timeout=60) as r:
                answers.append((r.status_code, r.read().decode()))

        threads = [threading.Thread(target=stream, args=(n,)) for n in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    statuses = Counter(status for status, _ in answers)
    assert set(statuses) == {200, 503} and statuses[503] > 0
    assert all(body.endswith("data: [DONE]\n\n") and '"error"' not in body for status, body in answers if status == 200)


def test_a_malformed_champion_pointer_is_reported_and_a_promotion_replaces_it(echo_home, tiny_model_dir):
    root = echo_home / "registry"
    tiny_checkpoint(root, "echo-a", tiny_model_dir, seed=1)
    registry = Registry(root)
    registry.set_champion("echo-a", "test")
    with _client(echo_home, tiny_model_dir, "transformers", poll_s=0.05) as (client, auth):
        def model() -> str:
            answer = client.post("/v1/completions", headers=auth["acme"], json={"prompt": "x = ("})
            assert answer.status_code == 200, answer.text
            return answer.json()["model"]

        assert model() == "echo-a"
        (root / "champion.json").write_text('{"name": ')  # cut short
        for _ in range(200):
            if client.get("/healthz", headers=auth["acme"]).json()["serving"].get("problem"):
                break
            threading.Event().wait(0.02)
        health = client.get("/healthz", headers=auth["acme"]).json()["serving"]
        assert "champion pointer cannot be read" in health["problem"] and str(root) not in json.dumps(health)
        assert model() == "echo-a"  # still serving
        # A tenant of its own whose pointer is malformed from the start: served the base meanwhile.
        tenancy.set_policy(echo_home / "tenant_policy.json", "initech", "own")
        (root / "tenants" / "initech").mkdir(parents=True)
        (root / "tenants" / "initech" / "champion.json").write_text("[]")
        own = client.post("/v1/completions", headers=auth["initech"], json={"prompt": "x = ("})
        assert own.status_code == 200 and own.json()["model"] == tiny_model_dir.name
        assert "champion pointer" in client.get("/healthz", headers=auth["initech"]).json()["serving"]["problem"]
        tiny_checkpoint(root, "echo-b", tiny_model_dir, seed=2)
        registry.set_champion("echo-b", "mends the pointer")
        assert json.loads((root / "champion.json").read_text())["previous"] is None
        for _ in range(200):
            if model() == "echo-b":
                break
        assert model() == "echo-b" and "problem" not in client.get("/healthz", headers=auth["acme"]).json()["serving"]


def test_what_is_served_is_harvestable_and_what_would_not_be_is_a_413(echo_home, tiny_model_dir):
    with _client(echo_home, tiny_model_dir) as (client, auth):
        # A body just under the 4 MiB limit (two bytes a character): served, its completion_shown,
        # with what the server adds, would be longer than a landing line.
        def window(chars: int) -> bytes:
            return json.dumps(_tabby("é" * chars + "x = (", "é" * chars), ensure_ascii=False).encode()

        assert len(window(1_048_000)) < CaptureSettings().max_body_bytes
        over = client.post("/v1/completions", headers=auth["acme"], content=window(1_048_000))
        assert over.status_code == 413 and "landing line" in over.text
        near = client.post("/v1/completions", headers=auth["acme"], content=window(1_000_000))
        assert near.status_code == 200
    landed = sorted((echo_home / "landing").glob("20*/*.jsonl"))
    assert max(len(line) for f in landed for line in f.open("rb")) <= MAX_LINE_BYTES
    kept, quarantined = _harvest(echo_home)
    assert kept["acme", "completion_shown"] == 1 and quarantined == Counter()


def test_a_schema_v1_line_longer_than_a_landing_line_is_a_400(echo_home):
    auth = _tokens(echo_home)
    app = build_app(str(echo_home / "landing"), echo_home / "capture" / "tokens.json", "n1",
                    CaptureSettings(max_body_bytes=8 << 20))
    event = {"schema_version": 1, "event": "document_snapshot", "event_id": "e1", "ts": "2026-12-07T10:00:00Z",
             "session_id": "s", "user_id": "u", "tenant_id": "x", "repo": None, "path": "a.py",
             "language": "python", "client": None, "document": "a" * (MAX_LINE_BYTES + 10), "trigger": "interval",
             "seq": 0}
    with TestClient(app) as client:
        answer = client.post("/v1/events", headers=auth["acme"], content=json.dumps(event).encode())
    assert answer.status_code == 400 and answer.json()["errors"][0]["reason"] == "line_too_long"


def test_a_failed_write_forgets_the_completion_it_made(echo_home, tiny_model_dir, monkeypatch):
    from echo_dagster.capture.sink import LocalSink

    original, failing = LocalSink.submit, [OSError("disk full")]  # the sink's next write fails, once

    def submit(self, lines):
        if failing:
            raise failing.pop()
        return original(self, lines)

    with _client(echo_home, tiny_model_dir) as (client, auth):
        monkeypatch.setattr(LocalSink, "submit", submit)
        refused = client.post("/v1/completions", headers=auth["acme"], json=_tabby(path="a.py"))
        assert refused.status_code == 503 and "not written" in refused.text
        assert client.app.state.live.stats("acme")["completions"] == 0
        assert client.post("/v1/completions", headers=auth["acme"], json=_tabby(path="a.py")).status_code == 200
    assert [e["event"] for e in _landed(echo_home)].count("completion_shown") == 1


def test_tabby_events_are_rate_limited_and_decided_only_by_the_token_that_asked(echo_home, tiny_model_dir):
    store = TokenStore(echo_home / "capture" / "tokens.json")
    alice, bob = ({"Authorization": f"Bearer {store.add('acme')}"} for _ in range(2))
    completions = build_completions(str(tiny_model_dir), str(echo_home / "registry"), ServeSettings())
    app = build_app(str(echo_home / "landing"), echo_home / "capture" / "tokens.json", "n1",
                    CaptureSettings(rate_per_s=1.0, burst=5), completions=completions)
    with TestClient(app) as client:
        served = client.post("/v1/completions", headers=alice, json=_tabby()).json()
        select = {"type": "select", "completion_id": served["id"]}
        assert client.post("/v1/events", headers=bob, json=select).json() == {"accepted": 0, "ignored": 1}
        assert client.post("/v1/events", headers=alice, json=select).json()["accepted"] == 1
        statuses = [client.post("/v1/events", headers=alice, json={"type": "view", "completion_id": "x"}).status_code
                    for _ in range(10)]
        assert 429 in statuses
    assert [e["event"] for e in _landed(echo_home)].count("completion_accepted") == 1


def test_an_identical_retry_decides_nothing_of_the_first_answer(echo_home, tiny_model_dir):
    with _client(echo_home, tiny_model_dir) as (client, auth):
        body = {"prompt": "def add(a, b):\n    return a", "suffix": "\n\n\ndef sub(a, b):\n    return a - b\n",
                "max_tokens": 4}
        first = client.post("/v1/completions", headers=auth["acme"], json=body).json()
        client.post("/v1/completions", headers=auth["acme"], json=body)
    decisions = [e for e in _landed(echo_home) if e["event"] in ("completion_accepted", "completion_rejected")]
    assert [e for e in decisions if e["completion_id"] == first["id"]] == []


def test_a_typed_over_completion_of_a_file_sent_whole_is_decided(echo_home, tiny_model_dir):
    """A client that sends the whole file each time (Continue): the later window differs from the
    first one, so the first completion is decided (typed over), though its snapshot is the later
    window itself."""
    with _client(echo_home, tiny_model_dir) as (client, auth):
        suffix = "\n\n\ndef sub(a, b):\n    return a - b\n"
        first = client.post("/v1/completions", headers=auth["acme"],
                            json={"prompt": "def add(a, b):\n    return a", "suffix": suffix, "max_tokens": 4}).json()
        client.post("/v1/completions", headers=auth["acme"],
                    json={"prompt": "def add(a, b):\n    return a + b  # typed", "suffix": suffix, "max_tokens": 4})
    decided = [e["event"] for e in _landed(echo_home) if e.get("completion_id") == first["id"]
               and e["event"] in ("completion_accepted", "completion_rejected")]
    assert len(decided) == 1


def test_a_failed_write_loses_no_other_tenants_close(echo_home, tiny_model_dir, monkeypatch):
    """The failing request's own completion is forgotten; the closes of other tenants' completions it
    pushed out of memory are still written, and nothing of the cause reaches the client."""
    from echo_dagster.capture.sink import LocalSink

    original, failing = LocalSink.submit, []

    def submit(self, lines):
        if failing:
            raise failing.pop()
        return original(self, lines)

    with _client(echo_home, tiny_model_dir, capture=CaptureSettings(live_total_bytes=6_000)) as (client, auth):
        monkeypatch.setattr(LocalSink, "submit", submit)
        assert client.post("/v1/completions", headers=auth["initech"], json=_tabby(path="i.py")).status_code == 200
        failing.append(OSError(f"disk full at {echo_home}"))
        statuses = [client.post("/v1/completions", headers=auth["acme"],
                                json=_tabby(prefix="x = 1\n" * 400 + f"v{n} = (", path=f"a{n}.py")).status_code
                    for n in range(3)]
        assert statuses[0] == 503 and str(echo_home) not in client.post(
            "/v1/completions", headers=auth["acme"], json=_tabby()).text
    kept, _ = _harvest(echo_home)
    assert kept[("initech", "completion_shown")] == 1 and kept[("initech", "document_closed")] == 1


def test_no_response_names_a_path_of_the_server(echo_home, tiny_model_dir):
    with _client(echo_home, tiny_model_dir) as (client, auth):
        answers = [client.get("/v1/health"), client.get("/v1/health", headers=auth["acme"]),
                   client.get("/healthz", headers=auth["acme"]), client.get("/v1/models", headers=auth["acme"]),
                   client.post("/v1/completions", headers=auth["acme"], json={"prompt": "x = (", "max_tokens": 2}),
                   client.post("/v1/completions", headers=auth["acme"],
                               json={"prompt": "x = (", "max_tokens": 2, "stream": True})]
    assert all(a.status_code == 200 for a in answers)
    assert not [a.text for a in answers if str(tiny_model_dir) in a.text or str(echo_home) in a.text]
    assert answers[4].json()["model"] == tiny_model_dir.name


def test_what_a_completion_writes_counts_against_its_tenants_rate(echo_home, tiny_model_dir):
    """Each request in a file writes a snapshot of every earlier open completion there: charged to
    the tenant as posted events are, so one tenant cannot fill the landing zone."""
    store = TokenStore(echo_home / "capture" / "tokens.json")
    hooli, acme = ({"Authorization": f"Bearer {store.add(t)}"} for t in ("hooli", "acme"))
    completions = build_completions(str(tiny_model_dir), str(echo_home / "registry"), ServeSettings())
    app = build_app(str(echo_home / "landing"), echo_home / "capture" / "tokens.json", "n1",
                    CaptureSettings(rate_per_s=0.5, burst=20), completions=completions)
    with TestClient(app) as client:
        doc = "".join(f"line_{i} = compute({i})\n" for i in range(40))  # distinct lines: each request finds the earlier ones
        statuses = [client.post("/v1/completions", headers=hooli,
                                json=_tabby(prefix=doc + "y = (", path="amp.py", suffix="\n" + doc)).status_code
                    for _ in range(12)]
        assert 429 in statuses and statuses[0] == 200
        assert client.post("/v1/completions", headers=acme, json=_tabby()).status_code == 200  # its own bucket


def test_one_tenants_completions_never_push_out_anothers_before_its_events(echo_home, tiny_model_dir, monkeypatch):
    from echo_dagster.capture import completion_routes

    monkeypatch.setattr(completion_routes, "DECIDABLE", 5)
    with _client(echo_home, tiny_model_dir) as (client, auth):
        mine = client.post("/v1/completions", headers=auth["initech"], json=_tabby(path="i.py")).json()
        for n in range(8):
            client.post("/v1/completions", headers=auth["hooli"], json={"prompt": f"x{n} = (", "max_tokens": 1})
        select = {"type": "select", "completion_id": mine["id"]}
        assert client.post("/v1/events", headers=auth["initech"], json=select).json()["accepted"] == 1


# The fuzz: any body, any field, on every engine ---------------------------------------------

_chars = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))
_value = st.recursive(
    st.none() | st.booleans() | st.integers(-2**600, 2**600) | st.floats() | st.text(_chars, max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(_chars, max_size=6), inner, max_size=3),
    max_leaves=8)
_TABBY = _tabby(user="dev", temperature=0, seed=1)
_OPENAI = {"prompt": "x = foo(", "suffix": ")\n", "max_tokens": 4, "stop": ["\n"], "temperature": 0, "seed": 1,
           "user": "dev", "stream": False, "language": "python", "n": 1, "best_of": 1, "echo": False}


def _dump(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _changed(base: dict):
    keys = sorted(base) + ["extra"]
    return st.dictionaries(st.sampled_from(keys), _value, max_size=3).map(lambda changes: _dump({**base, **changes}))


_bodies = st.one_of(
    st.binary(max_size=120),
    st.builds(_dump, _value),
    _changed(_OPENAI),
    _changed(_TABBY),
    st.dictionaries(st.sampled_from(sorted(_TABBY["segments"]) + ["git_url"]), _value, max_size=3).map(
        lambda changes: _dump({**_TABBY, "segments": {**_TABBY["segments"], **changes}})),
)


@pytest.mark.parametrize("engine", ["transformers", "ctranslate2", "upstream"])
def test_fuzzed_completion_bodies_never_get_a_500_and_nothing_of_another_tenant_is_lost(echo_home, tiny_model_dir,
                                                                                      engine, caplog):
    statuses: Counter = Counter()
    with _client(echo_home, tiny_model_dir, engine) as (client, auth):
        for tenant in ("initech", "hooli"):
            assert client.post("/v1/completions", headers=auth[tenant], json=_tabby(path=f"{tenant}.py")).status_code == 200

        @settings(max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(_bodies, st.booleans())
        def check(body, on_events):
            answer = client.post("/v1/events" if on_events else "/v1/completions", headers=auth["acme"], content=body)
            statuses[answer.status_code] += 1
            assert answer.status_code in (200, 400, 413), (body[:300], answer.text[:300])

        check()
    assert statuses[200] and statuses[400]
    assert "Traceback" not in caplog.text and "not valid: written for quarantine" not in caplog.text
    kept, quarantined = _harvest(echo_home)
    assert kept["initech", "document_closed"] == 1 and kept["hooli", "document_closed"] == 1
    assert quarantined == Counter()
