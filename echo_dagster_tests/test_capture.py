"""The capture endpoint, a real server on 127.0.0.1: auth, limits, validation, opt-out, Continue's
posts, durability across a clean stop and a kill, and a bounded load with a kill in the middle."""

import json
import signal
from datetime import datetime, timezone

import httpx
import pytest

from echo_dagster.capture.loadtest import LocalServer, event, landed_once, run_load
from echo_dagster.capture.tokens import TokenStore
from echo_dagster_tests.test_clients import CONTINUE


class Server(LocalServer):
    def post(self, body, token, path="/v1/events", **kwargs):
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(self.url + path, content=content, headers=headers, timeout=10, **kwargs)

    def landed(self) -> list[dict]:
        return [json.loads(line) for f in sorted(self.landing.glob("20*/*.jsonl")) for line in f.open()]

    def open_segments(self) -> list:
        return sorted((self.landing / "_capture" / "n1").glob("*.jsonl"))


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    s.token = TokenStore(s.tokens).add("acme")
    s.start()
    yield s
    s.stop()


def test_auth_validation_limits_and_the_tenant_from_the_token(server):
    one = event(0, 0) | {"tenant_id": "someone-else"}
    assert server.post(one, None).status_code == 401
    assert server.post(one, "echo_not-a-token").status_code == 401
    answer = server.post(one, server.token)
    assert answer.status_code == 200 and answer.json() == {"accepted": 1, "opted_out": 0, "ignored": 0}
    # Acknowledged means written and synced: it is in the open segment already.
    (segment,) = server.open_segments()
    assert json.loads(segment.read_text())["tenant_id"] == "acme"
    bad = [event(0, 1), {k: v for k, v in event(0, 2).items() if k != "session_id"}, event(0, 3) | {"ts": "noon"}]
    answer = server.post("\n".join(json.dumps(e) for e in bad).encode() + b"\n{oops", server.token)
    assert answer.status_code == 400
    errors = answer.json()["errors"]
    assert [(e["line"], e["reason"], e["field"]) for e in errors] == [
        (2, "missing_field", "session_id"), (3, "bad_field_value", "ts"), (4, "bad_json", None)]
    assert answer.json()["error"] == "3 invalid event(s); none written"
    assert len(segment.read_text().splitlines()) == 1  # all or nothing
    assert server.post(b"x" * (5 << 20), server.token).status_code == 413
    many = "\n".join(json.dumps(event(1, n)) for n in range(1001)).encode()
    assert server.post(many, server.token).status_code == 413
    assert httpx.get(server.url + "/healthz").json()["status"] == "ok"


def test_the_rate_limit_answers_429_with_retry_after(tmp_path):
    s = Server(tmp_path, rate=5)  # burst of 12 events
    token = TokenStore(s.tokens).add("acme")
    s.start()
    try:
        batch = "\n".join(json.dumps(event(0, n)) for n in range(10)).encode()
        assert s.post(batch, token).status_code == 200
        answer = s.post(batch, token)
        assert answer.status_code == 429 and int(answer.headers["Retry-After"]) >= 1
    finally:
        s.stop()


def test_opted_out_users_are_dropped_at_the_door(server):
    server.opt_out.write_text("user:user-7\n")
    batch = [event(7, 0), event(8, 0)]
    answer = server.post("\n".join(json.dumps(e) for e in batch).encode(), server.token)
    assert answer.json() == {"accepted": 1, "opted_out": 1, "ignored": 0}
    server.stop()  # a clean stop publishes the segment into the day's folder
    assert [e["user_id"] for e in server.landed()] == ["user-8"] and server.open_segments() == []


def test_continue_posts_become_schema_v1_with_implicit_snapshots(server):
    lines = [json.loads(line) for line in CONTINUE.read_text().splitlines()[:2]]  # c-1 accepted, c-2 after it
    for data in lines:
        body = {"name": "autocomplete", "data": data, "schema": "0.2.0", "level": "all", "profileId": "local"}
        assert server.post(body, server.token, "/v1/continue").json()["accepted"] >= 2
    chat = {"name": "chatInteraction", "data": {"prompt": "hi"}, "schema": "0.2.0", "level": "all"}
    assert server.post(chat, server.token, "/v1/continue").json() == {"accepted": 0, "opted_out": 0, "ignored": 1}
    broken = {"name": "autocomplete", "data": {"completionId": "c-9"}, "schema": "0.2.0", "level": "all"}
    answer = server.post(broken, server.token, "/v1/continue")
    assert answer.status_code == 400 and answer.json()["errors"][0]["reason"] == "missing_field"
    server.stop()
    kinds = [(e["session_id"], e["event"]) for e in server.landed()]
    assert ("continue:c-1", "document_snapshot") in kinds and ("continue:c-2", "completion_rejected") in kinds
    (snapshot,) = [e for e in server.landed() if e["event"] == "document_snapshot"]
    assert "return math.pi * r ** 2" in snapshot["document"] and snapshot["tenant_id"] == "acme"


def test_a_killed_server_loses_nothing_it_acknowledged(server):
    acked = [event(3, n) for n in range(5)]
    for e in acked:
        assert server.post(e, server.token).status_code == 200
    (segment,) = server.open_segments()
    server.stop(signal.SIGKILL)
    with segment.open("ab") as f:
        f.write(b'{"torn": "by the crash')  # a line the crash cut: never acknowledged
    second = Server(server.landing.parent)
    second.port, second.url = server.port, server.url
    second.start()
    try:
        assert httpx.get(second.url + "/healthz", headers={"Authorization": f"Bearer {server.token}"}).json()[
            "recovered_segments"] == 1
        assert second.open_segments() == []
        assert [e["event_id"] for e in second.landed()] == [e["event_id"] for e in acked]
    finally:
        second.stop()


def test_under_load_with_a_kill_every_acknowledged_event_lands_exactly_once(server, tmp_path):
    def kill_and_restart():
        server.stop(signal.SIGKILL)
        server.start()

    result = run_load(server.url, server.token, clients=4, seconds=6.0, batch=10, fault=kill_and_restart)
    server.stop()
    assert len(result.acked) > 200 and result.failures, result.as_dict()  # the kill was felt, and retried
    check = landed_once(server.landing, datetime.now(timezone.utc).date(), result.acked, tmp_path / "wh.duckdb")
    assert check["missing"] == 0 and check["more_than_once"] == 0 and check["quarantined"] == 0, check


def test_segments_rotate_under_steady_load_and_a_node_runs_once(tmp_path):
    import time

    from echo_dagster.capture.sink import LocalSink

    sink = LocalSink(tmp_path, "n", rotate_s=0.2)
    with pytest.raises(RuntimeError, match="another capture server runs as node 'n'"):
        LocalSink(tmp_path, "n")
    futures = []
    for i in range(20):  # never idle for a second: segments still rotate by age
        futures.append(sink.submit([json.dumps({"n": i}).encode() + b"\n"]))
        time.sleep(0.03)
    assert [f.result() for f in futures] == [1] * 20
    published = sorted(tmp_path.glob("20*/capture-n-*.jsonl"))
    sink.close()
    assert len(published) >= 2
    lines = [json.loads(line)["n"] for f in sorted(tmp_path.glob("20*/capture-n-*.jsonl")) for line in f.open()]
    assert sorted(lines) == list(range(20))
