"""The capture endpoint against a hostile client (issue 13): a broken opt-out list, hostile bodies,
slow and idle connections, heavy posts, and Continue posts that would keep memory for ever.

Every test here fails on the endpoint before the fix (commit fab0820): with a 500, a hang, a
starved server, a frozen event loop or unbounded memory (the in-process ones also for want of the
API they drive). Of the parametrized hostile bodies, these were 500s then: the lone surrogates,
972 levels of nesting and deeper, CESU-8 surrogates, the Continue timestamps (year 1 at +14:00,
9999 at -14:00, 9999's last microsecond, before 1970: an overflow, or accepted) and a lone
surrogate in Continue's userId; UTF-16 was accepted. The others were 400s already and stay as
guards of the same family."""

import json
import logging
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from echo_dagster import optout
from echo_dagster.capture import bodies
from echo_dagster.capture.app import CaptureSettings, create_app
from echo_dagster.capture.loadtest import LocalServer, SlowClients, continue_body, event, junk_lines_body
from echo_dagster.capture.sink import LocalSink
from echo_dagster.capture.tokens import TokenStore
from echo_dagster.clients.continue_dev import continue_completion
from echo_dagster.clients.implicit import LiveStreams, _cost
from echo_dagster.clients.records import ClientCompletion, ReadResult
from echo_dagster.events import REASONS

CONTINUE_DATA = {"completionId": "c-1", "timestamp": "2026-11-21T10:00:00Z", "prefix": "def area(r):\n    ",
                 "suffix": "\n", "completion": "return 3.14 * r * r", "accepted": True, "time": 80,
                 "filepath": "file:///geo.py", "userId": "jane"}
MAPPING_REASONS = {"missing_field", "bad_field_type", "bad_field_value", "not_an_object", "other_event"}


def _continue(**data) -> bytes:
    return json.dumps({"name": "autocomplete", "data": CONTINUE_DATA | data, "schema": "0.2.0",
                       "level": "all"}).encode()


def _post(server, body: bytes, token: str, path="/v1/events", **kw) -> httpx.Response:
    return httpx.post(server.url + path, content=body, headers={"Authorization": f"Bearer {token}"},
                      timeout=30, **kw)


def _requests_logged(server) -> list[dict]:
    return [e for e in server.log_lines() if e.get("msg") == "request"]


# 1. A broken opt-out list ---------------------------------------------------------------------


def test_a_broken_opt_out_list_refuses_posts_with_503_naming_file_and_line_until_it_is_fixed(tmp_path):
    server = LocalServer(tmp_path)
    token = TokenStore(server.tokens).add("acme")
    server.start()
    try:
        server.opt_out.write_text("user:someone\nthis line has no kind\n")
        refused = _post(server, json.dumps(event(0, 0)).encode(), token)
        assert refused.status_code == 503, refused.text
        assert "opt_out.txt:2" in refused.json()["error"] and "expected 'user:<id>'" in refused.json()["error"]
        assert str(server.opt_out.parent) not in refused.text  # the file by its name: its path is for the log
        assert refused.headers["Retry-After"]
        assert _post(server, _continue(), token, "/v1/continue").status_code == 503
        anonymous = httpx.get(server.url + "/healthz", timeout=10)
        assert anonymous.status_code == 503 and anonymous.json() == {"status": "refusing"}
        health = httpx.get(server.url + "/healthz", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "refusing"
        assert any("opt_out.txt:2" in p for p in health.json()["problems"]) and str(server.opt_out.parent) not in health.text
        assert not list((server.landing / "_capture" / "n1").glob("*.jsonl"))  # nothing was written

        server.opt_out.write_text("# fixed\nuser:jane doe\n")  # an id with a space is an id
        batch = [event(1, 0) | {"user_id": "jane doe"}, event(2, 0)]
        answer = _post(server, "\n".join(json.dumps(e) for e in batch).encode(), token)
        assert answer.status_code == 200 and answer.json() == {"accepted": 1, "opted_out": 1, "ignored": 0}
        health = httpx.get(server.url + "/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert server.process.poll() is None
        statuses = [e["status"] for e in _requests_logged(server)]
        assert statuses == [503, 503, 200]
    finally:
        server.stop()


def test_an_unreadable_token_file_refuses_posts_with_503_and_says_so_in_healthz(tmp_path):
    server = LocalServer(tmp_path)
    token = TokenStore(server.tokens).add("acme")
    server.start()
    try:
        good = server.tokens.read_text()
        server.tokens.write_text(good[: len(good) // 2])  # cut short, as by a crashed editor
        answer = _post(server, json.dumps(event(0, 0)).encode(), token)
        assert answer.status_code == 503 and "token file" in answer.json()["error"]
        assert str(server.tokens) not in answer.text  # its path is for the operator
        # No token can be checked: anyone, the token's holder too, hears only that posts are refused.
        health = httpx.get(server.url + "/healthz", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert health.status_code == 503 and health.json() == {"status": "refusing"}
        server.tokens.write_text(good)
        assert _post(server, json.dumps(event(0, 0)).encode(), token).status_code == 200
    finally:
        server.stop()


# 2. Hostile bodies ---------------------------------------------------------------------------

_EVENT = json.dumps(event(0, 0))
HOSTILE_EVENTS = {
    "lone surrogate": _EVENT.replace('"repo": "load"', '"repo": "\\ud800"').encode(),
    "lone low surrogate": _EVENT.replace('"repo": "load"', '"repo": "x\\udc00y"').encode(),
    "972 levels": b"[" * 972 + b"]" * 972,
    "deep inside an event": _EVENT[:-1].encode() + b', "extra": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    "NaN": _EVENT.replace("120.0", "NaN").encode(),
    "Infinity": _EVENT.replace("120.0", "-Infinity").encode(),
    "1e999": _EVENT.replace("120.0", "1e999").encode(),
    "5000 digits": _EVENT.replace("120.0", "1" * 5000).encode(),
    "cursor past 64 bits": _EVENT.replace('"cursor": ', '"cursor": 1' + "0" * 30 + ', "was": ').encode(),
    "not UTF-8": _EVENT.replace('"load"', '"lo\udcffad"', 1).encode("utf-8", "surrogateescape"),
    "CESU-8 surrogates": _EVENT.replace('"load"', '"\ud83d\ude00"', 1).encode("utf-8", "surrogatepass"),
    "UTF-16": _EVENT.encode("utf-16"),
    "NUL": _EVENT.replace('"load"', '"lo\x00ad"', 1).encode(),
    "a list": b"[1, 2]\n[3]",
}
HOSTILE_CONTINUE = {
    "year 1 at +14:00": _continue(timestamp="0001-01-01T00:00:00+14:00"),
    "year 9999 at -14:00": _continue(timestamp="9999-12-31T23:59:59-14:00"),
    "last microsecond of 9999": _continue(timestamp="9999-12-31T23:59:59.999999"),
    "year 500": _continue(timestamp="0500-01-01T00:00:00Z"),
    "before 1970": _continue(timestamp="1969-12-31T23:59:59Z"),
    "data a list": json.dumps({"name": "autocomplete", "data": [1], "schema": "0.2.0"}).encode(),
    "data a string": json.dumps({"name": "autocomplete", "data": "x", "schema": "0.2.0"}).encode(),
    "userId a lone surrogate": _continue(userId="\ud800"),
    "time infinite": _continue(time=float("inf")),
    "time negative": _continue(time=-5),
    "prefix nested 2000 deep": _continue()[:-1] + b', "x": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    "not UTF-8": _continue(prefix="\udcff").decode().replace("\\udcff", "\udcff").encode("utf-8", "surrogateescape"),
    "empty": b"",
}


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory):
    server = LocalServer(tmp_path_factory.mktemp("hostile"))
    server.token = TokenStore(server.tokens).add("acme")
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("path, body", [("/v1/events", b) for b in HOSTILE_EVENTS.values()]
                         + [("/v1/continue", b) for b in HOSTILE_CONTINUE.values()],
                         ids=[f"events-{k}" for k in HOSTILE_EVENTS] + [f"continue-{k}" for k in HOSTILE_CONTINUE])
def test_hostile_bodies_are_400_with_a_reason_and_a_request_log_line(hostile_server, path, body):
    logged = len(_requests_logged(hostile_server))
    answer = _post(hostile_server, body, hostile_server.token, path)
    assert answer.status_code == 400, answer.text
    errors = answer.json()["errors"]
    assert errors and all(e["reason"] in set(REASONS) | MAPPING_REASONS and e["message"] for e in errors), errors
    lines = _requests_logged(hostile_server)[logged:]
    assert [(e["route"], e["status"]) for e in lines] == [(path.rsplit("/", 1)[1], 400)]


def test_the_messages_say_what_was_wrong(hostile_server):
    def first(body, path="/v1/events"):
        return _post(hostile_server, body, hostile_server.token, path).json()["errors"][0]

    assert "surrogate" in first(HOSTILE_EVENTS["lone surrogate"])["message"]
    assert first(HOSTILE_EVENTS["deep inside an event"])["reason"] == "nested_too_deep"
    assert "NaN and Infinity are not JSON" in first(HOSTILE_EVENTS["NaN"])["message"]
    assert first(HOSTILE_EVENTS["not UTF-8"])["reason"] == "invalid_utf8"
    timestamp = first(HOSTILE_CONTINUE["year 1 at +14:00"], "/v1/continue")
    assert timestamp["reason"] == "bad_field_value" and "'timestamp'" in timestamp["message"]
    assert "field 'data'" in first(HOSTILE_CONTINUE["data a list"], "/v1/continue")["message"]


def test_an_importer_skips_out_of_range_continue_timestamps_instead_of_crashing():
    read = ReadResult()
    for n, stamp in enumerate(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999", "2026-11-21T10:00:00Z"]):
        continue_completion(CONTINUE_DATA | {"timestamp": stamp, "completionId": f"c-{n}"}, read, f"l{n}")
    assert read.skipped == {"bad_field_value": 2}


def _app_client(tmp_path, settings: CaptureSettings = CaptureSettings(rate_per_s=1e9, burst=10**9)):
    tokens = TokenStore(tmp_path / "tokens.json")
    token = tokens.add("acme")
    app = create_app(tokens, LocalSink(tmp_path / "landing", "n"), optout.watch(tmp_path / "opt_out.txt").value,
                     settings)
    return TestClient(app), {"Authorization": f"Bearer {token}"}


_chars = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**80, 2**80) | st.floats() | st.text(_chars, max_size=12)
    | st.sampled_from(["2026-11-21T10:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999-14:00"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(_chars, max_size=8), inner, max_size=4),
    max_leaves=12)
_odd_times = st.builds(
    lambda at, minutes: at.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
    st.datetimes(), st.integers(-(24 * 60 - 1), 24 * 60 - 1))


def _dump(value, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


_events_bodies = st.one_of(
    st.binary(max_size=200),
    st.builds(_dump, _json, st.booleans()),
    st.builds(lambda changes, ascii_only: _dump(event(0, 0) | changes, ascii_only),
              st.dictionaries(st.sampled_from(sorted(event(0, 0)) + ["extra"]), _json, max_size=3), st.booleans()),
    st.integers(900, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.lists(st.builds(lambda changes: json.dumps(event(0, 0) | changes),
                       st.dictionaries(st.sampled_from(sorted(event(0, 0))), _json, max_size=2)),
             min_size=2, max_size=4).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")),
)
_continue_bodies = st.one_of(
    st.binary(max_size=200),
    st.builds(_dump, _json, st.booleans()),
    st.builds(lambda changes, ascii_only: _dump({"name": "autocomplete", "data": CONTINUE_DATA | changes,
                                                 "schema": "0.2.0", "level": "all"}, ascii_only),
              st.dictionaries(st.sampled_from(sorted(CONTINUE_DATA) + ["eventName"]), _json | _odd_times,
                              max_size=3), st.booleans()),
    st.builds(lambda stamp: _continue(timestamp=stamp, completionId=stamp), _odd_times),
    st.builds(lambda envelope: _dump(envelope, True),
              st.fixed_dictionaries({"name": _json | st.just("autocomplete"), "data": _json, "level": _json})),
)


def test_random_junk_never_gets_a_5xx_and_every_request_is_logged(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="echo_dagster.capture")
    client, headers = _app_client(tmp_path)
    posted = []
    with client:
        @settings(max_examples=300, deadline=None, database=None)
        @given(st.one_of(st.tuples(st.just("/v1/events"), _events_bodies),
                         st.tuples(st.just("/v1/continue"), _continue_bodies)))
        def check(case):
            path, body = case
            answer = client.post(path, content=body, headers=headers)
            posted.append(answer.status_code)
            assert answer.status_code in (200, 400, 413), (body[:300], answer.text)

        check()
    logged = [json.loads(r.getMessage())["status"] for r in caplog.records if '"msg": "request"' in r.getMessage()]
    assert logged == posted and 400 in posted and 200 in posted


# 3. Connections: deadlines, header bytes, a cap below the file-descriptor limit ----------------


def _still_open_after(socks: dict, seconds: float) -> list[str]:
    """The names of the sockets the server has not closed within `seconds`; `socks`: name ->
    (socket, bytes to trickle a byte at a time meanwhile, or None). An answer the server sends
    before closing (a 401, a 400) is read and ignored."""
    open_ = dict(socks)
    for sock, _ in open_.values():
        sock.setblocking(False)
    deadline, sent = time.monotonic() + seconds, 0
    while open_ and time.monotonic() < deadline:
        time.sleep(0.2)
        for name, (sock, trickle) in list(open_.items()):
            try:
                if sock.recv(65536) == b"":
                    del open_[name]
                    continue
            except BlockingIOError:
                pass
            except OSError:
                del open_[name]
                continue
            if trickle:
                try:
                    sock.send(trickle[sent % len(trickle):][:1])
                except OSError:
                    del open_[name]
        sent += 1
    return sorted(open_)


def _get_health(sock: socket.socket) -> bytes:
    """GET /healthz on an open connection; the whole response."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    (length,) = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    while len(body) < length:
        body += sock.recv(4096)
    return data


@pytest.fixture(params=["h11", "httptools"])
def guarded_server(request, tmp_path):
    server = LocalServer(tmp_path, nofile=256, options=("--http", request.param, "--read-timeout-s", 1.5,
                                                        "--keep-alive-s", 5, "--max-header-bytes", 8192))
    server.token = TokenStore(server.tokens).add("acme")
    server.http = request.param
    server.start()
    yield server
    server.stop()


def test_idle_slow_and_oversized_requests_are_cut_and_keep_alive_still_works(guarded_server):
    port, token = guarded_server.port, guarded_server.token

    def connect(first: bytes) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(first)
        return sock

    socks = {
        "idle": (connect(b""), None),  # sends nothing at all
        "slow head": (connect(b"GET /healthz HTTP/1.1\r\n"), b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"),
        "slow body": (connect(f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                              f"Content-Length: 100000\r\n\r\n".encode()), b"{}"),
        # answered 401 at once, then the rest of its body dribbles in
        "unauthenticated body": (connect(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"),
                                 b"{}"),
        "big head": (connect(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"), None),
    }
    try:
        assert _still_open_after(socks, 15) == []
    finally:
        for sock, _ in socks.values():
            sock.close()
    closed = guarded_server.health(guarded_server.token)["connections_closed"]
    assert closed["read_timeout"] == 4
    if guarded_server.http == "httptools":  # h11 has this limit of its own (uvicorn's 400)
        assert closed["headers_too_large"] == 1
    # Between requests, idleness is keep-alive's (5 s), not the 1.5 s deadline of a request's arrival.
    with socket.create_connection(("127.0.0.1", port)) as keeper:
        assert _get_health(keeper).startswith(b"HTTP/1.1 200")
        time.sleep(2.5)
        assert _get_health(keeper).startswith(b"HTTP/1.1 200")


def test_slow_connections_beyond_the_fd_limit_do_not_starve_legitimate_clients(guarded_server):
    # 300 connections sending a request a byte a second, to a server allowed 256 file descriptors.
    with SlowClients(guarded_server.port, 300, every_s=0.5) as slow:
        time.sleep(0.5)
        for n in range(5):
            answer = _post(guarded_server, json.dumps(event(5, n)).encode(), guarded_server.token)
            assert answer.status_code == 200
        deadline = time.monotonic() + 20
        while slow.closed() < 300 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert slow.closed() == 300  # evicted to make room, or cut by the deadline
    closed = guarded_server.health(guarded_server.token)["connections_closed"]
    assert closed["evicted_waiting"] > 0 and closed["read_timeout"] > 0


# 3. Heavy posts: lines counted before parsing, parsing off the event loop --------------------


def test_a_post_of_millions_of_lines_is_refused_before_parsing_and_health_answers_meanwhile(hostile_server):
    answers: dict = {}
    poster = threading.Thread(target=lambda: answers.update(
        big=_post(hostile_server, junk_lines_body(), hostile_server.token)))
    poster.start()
    health = []
    try:
        while poster.is_alive() or not health:  # the event loop answers all along (it once froze for 15 s)
            health.append(httpx.get(hostile_server.url + "/healthz", timeout=5).status_code)
    finally:
        poster.join()
    assert set(health) == {200}
    assert answers["big"].status_code == 413 and "1398101 lines" in answers["big"].json()["error"]


def test_decoding_and_validation_run_off_the_event_loop(tmp_path, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real = bodies.schema_v1

    def held(body, tenant):  # a post whose processing takes as long as the test wants
        entered.set()
        release.wait(30)
        return real(body, tenant)

    monkeypatch.setattr(bodies, "schema_v1", held)
    client, headers = _app_client(tmp_path)
    answers: dict = {}
    with client:
        poster = threading.Thread(target=lambda: answers.update(
            post=client.post("/v1/events", content=json.dumps(event(0, 0)).encode(), headers=headers)))
        poster.start()
        assert entered.wait(10)
        checker = threading.Thread(target=lambda: answers.update(health=client.get("/healthz")))
        checker.start()
        checker.join(10)
        answered_while_held = "health" in answers
        release.set()
        poster.join()
        checker.join()
    assert answered_while_held and answers["health"].status_code == 200
    assert answers["post"].status_code == 200


# 3. Continue's open completions: bounded memory, the server's clock ------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _completion(n: int, *, file: str | None = None, window: int = 4000, at: datetime | None = None,
                user: str = "u") -> ClientCompletion:
    at = at or datetime(2999, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=n)
    return ClientCompletion(client="continue", completion_id=f"c{n}", shown_ts=at, decided_ts=at, user_id=user,
                            path=file or f"/f{n}.py", repo=None, language="python", client_version=None,
                            model=None, prefix=f"# {n}\n" + "x = 1\n" * (window // 12), suffix="\n" * (window // 2),
                            proposal="pass", latency_ms=None, decision="rejected")


def test_open_completions_are_bounded_per_tenant_and_in_all_the_oldest_closed_first():
    cost = _cost(_completion(0))
    live = LiveStreams(tenant_bytes=4 * cost + 10, total_bytes=6 * cost + 10, clock=Clock())
    closed = []
    for n in range(10):  # a file each, dated 2999: nothing would ever close them by their own clock
        own, evicted = live.add(_completion(n), "a")
        assert [e["event"] for e in own] == ["completion_shown", "completion_rejected"]
        closed += evicted
        assert live.stats()["bytes"] <= 4 * cost + 10
    assert [e["session_id"] for e in closed] == [f"continue:c{n}" for n in range(6)]
    assert all(e["event"] == "document_closed" and e["tenant_id"] == "a" for e in closed)
    assert live.stats()["completions"] == 4
    for n in range(10, 13):  # tenant b's, within its own budget: the total pushes out a's oldest
        _, evicted = live.add(_completion(n), "b")
        assert [e["tenant_id"] for e in evicted] == (["a"] if n > 11 else [])
    stats = live.stats()
    assert (stats["files"], stats["completions"]) == (6, 6) and stats["bytes"] <= 6 * cost + 10


def test_idle_files_close_by_the_servers_clock_whatever_the_clients_say():
    clock = Clock()
    live = LiveStreams(idle_close=timedelta(minutes=30), clock=clock)
    live.add(_completion(1, file="/a.py"), "t")  # dated 2999
    clock.now += 20 * 60
    live.add(_completion(2, file="/a.py"), "t")
    live.add(_completion(3, file="/b.py", at=datetime(2001, 1, 1, tzinfo=timezone.utc)), "t")  # long past
    clock.now += 15 * 60
    assert live.sweep() == []  # a.py saw a request 15 minutes ago, b.py too (by the server's clock)
    clock.now += 15 * 60
    closed = live.sweep()
    assert sorted(e["session_id"] for e in closed) == ["continue:c1", "continue:c2", "continue:c3"]
    assert live.stats() == {"files": 0, "completions": 0, "bytes": 0}


def test_a_completion_with_a_huge_window_takes_no_part_in_snapshots():
    live = LiveStreams(max_window_chars=10_000, clock=Clock())
    own, evicted = live.add(_completion(1, window=50_000), "t")
    assert [e["event"] for e in own] == ["completion_shown", "completion_rejected"] and evicted == []
    assert live.stats()["completions"] == 0


def test_continue_posts_dated_far_ahead_are_closed_by_the_server_and_their_memory_is_bounded(tmp_path):
    settings = CaptureSettings(rate_per_s=1e9, burst=10**9, live_tenant_bytes=200_000, idle_close_s=1.0,
                               sweep_s=0.2)
    client, headers = _app_client(tmp_path, settings)
    with client:
        for n in range(40):  # 40 posts of 40,000-character windows, each in a file of its own
            answer = client.post("/v1/continue", content=continue_body(n, window_chars=40_000), headers=headers)
            assert answer.status_code == 200 and answer.json()["accepted"] == 2
            assert client.get("/healthz", headers=headers).json()["open_completions"]["bytes"] <= 200_000
        deadline = time.monotonic() + 20
        while client.get("/healthz", headers=headers).json()["open_completions"]["completions"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/healthz", headers=headers).json()["open_completions"] == {"files": 0, "completions": 0, "bytes": 0}
    landed = [json.loads(line) for f in (tmp_path / "landing").glob("20*/*.jsonl") for line in f.open()]
    closes = sorted(e["session_id"] for e in landed if e["event"] == "document_closed")
    assert closes == sorted(f"continue:future-{n}" for n in range(40))  # evicted, or swept by the server's clock


# Options ---------------------------------------------------------------------------------------


def test_every_limit_is_an_option_of_serve():
    import argparse

    from echo_dagster.capture.server import add_options, settings_from

    parser = argparse.ArgumentParser()
    add_options(parser)
    assert settings_from(parser.parse_args([])) == CaptureSettings()
    chosen = settings_from(parser.parse_args(["--read-timeout-s", "3", "--max-connections", "10", "--rate", "10",
                                              "--live-tenant-bytes", "1000", "--workers", "2"]))
    assert (chosen.read_timeout_s, chosen.max_connections, chosen.rate_per_s, chosen.burst,
            chosen.live_tenant_bytes, chosen.workers) == (3.0, 10, 10.0, 25, 1000, 2)
