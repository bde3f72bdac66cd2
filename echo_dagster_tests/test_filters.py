"""The filter pipeline: every reason code, the eval routing, de-identified output."""

import pytest

from echo_dagster.filters.pipeline import FilterState, filter_row
from echo_dagster.splits import file_split

PREFIX = "import math\n\n\ndef area(r):\n    "
SUFFIX = "\n\n\nprint(area(2))\n"


def train_path(n: int = 0) -> str:
    return next(f"src/geo_{i}.py" for i in range(n, 10_000) if file_split("repo", f"src/geo_{i}.py") == "train")


def eval_path() -> str:
    return next(f"src/geo_{i}.py" for i in range(10_000) if file_split("repo", f"src/geo_{i}.py") == "eval")


def row(target="return math.pi * r ** 2\n", **fields) -> dict:
    base = {"completion_id": "c", "session_id": "s", "user_id": "u1", "tenant_id": "t1", "repo": "repo",
            "path": train_path(), "language": "python", "model": "m", "proposal": "return 0\n",
            "decision": "rejected", "accepted_text": None, "source_kind": "rejected_rewritten", "prefix": PREFIX,
            "suffix": SUFFIX, "target": target, "es": 0.4, "survived": None, "reason": None}
    return base | fields


@pytest.fixture
def state():
    return FilterState(opted_out_users=frozenset({"gone"}), opted_out_tenants=frozenset({"t-gone"}))


def test_a_clean_row_is_kept_with_its_key(state):
    out = filter_row(row(), state)
    assert out["drop_reason"] is None and out["split"] == "train" and len(out["dedup_key"]) == 64


@pytest.mark.parametrize("fields, reason", [
    ({"user_id": "gone"}, "opted_out"),
    ({"tenant_id": "t-gone"}, "opted_out"),
    ({"target": None, "reason": "no_final_snapshot"}, "no_final_snapshot"),
    ({"target": "return math.pi * (r ** 2\n"}, "syntax_error"),
    ({"target": "x = 1\n      return x\n"}, "syntax_error"),  # bad indentation: compile() sees it
    ({"target": 'return "AKIAQWERTYUIOPASDFGH"\n'}, "mostly_pii"),
    ({"target": "pass  # ;\n", "prefix": PREFIX}, None),
    ({"target": ")\n", "prefix": "x = (1,\n    ", "suffix": "\n"}, "trivial"),
    ({"target": "return (\n" + "        1 +\n" * 12 + "        1)\n"}, "too_long"),
    ({"decision": "accepted", "accepted_text": "return 0\n", "es": 0.1}, "rewrite"),
    ({"pasted_share": 0.9}, "paste_dominated"),
    ({"pasted_share": 0.2}, None),
])
def test_each_reason(state, fields, reason):
    out = filter_row(row(**fields), state)
    assert out["drop_reason"] == reason
    if reason == "opted_out":
        assert out["prefix"] is None and out["target"] is None and out["proposal"] is None


def test_duplicates_and_near_duplicates_within_and_across_partitions(state):
    assert filter_row(row(), state)["drop_reason"] is None
    assert filter_row(row(completion_id="c2"), state)["drop_reason"] == "duplicate"
    # The same code in another place (another context, so another key), a comment added.
    longer = "r2 = r * r\n    area = math.pi * r2\n    half = area / 2\n    return area, half\n"
    assert filter_row(row(target=longer, completion_id="c5"), state)["drop_reason"] is None
    near = row(target=longer.replace("half = area / 2", "half = area / 2  # half"), completion_id="c3",
               prefix="import math\n\n\ndef circle_area(r):\n    ")
    assert filter_row(near, state)["drop_reason"] == "near_duplicate"
    later = FilterState(seen_keys=set(state.seen_keys))  # a later partition starts from the earlier keys
    assert filter_row(row(completion_id="c4"), later)["drop_reason"] == "duplicate"


def test_eval_rows_are_routed_and_never_trained_on(state):
    routed = filter_row(row(path=eval_path()), state)
    assert routed["split"] == "eval" and routed["drop_reason"] is None
    leaked = filter_row(row(path=train_path(), prefix="import math\n\n\ndef disc(r):\n    "), state)
    assert leaked["drop_reason"] == "eval_overlap"


def test_one_tenants_rows_never_make_anothers_a_duplicate_or_an_eval_overlap(state):
    longer = "r2 = r * r\n    area = math.pi * r2\n    half = area / 2\n    return area, half\n"
    assert filter_row(row(target=longer, path=eval_path(), tenant_id="t-c"), state)["split"] == "eval"
    assert filter_row(row(tenant_id="t-c", completion_id="c-1"), state)["drop_reason"] is None
    # Tenant A's own code, the same as C's: neither C's training row nor C's eval row suppresses it.
    assert filter_row(row(tenant_id="t-a", completion_id="a-1"), state)["drop_reason"] is None
    assert filter_row(row(target=longer, tenant_id="t-a", completion_id="a-2",
                          prefix="import math\n\n\ndef disc(r):\n    "), state)["drop_reason"] is None
    assert filter_row(row(tenant_id="t-a", completion_id="a-3"), state)["drop_reason"] == "duplicate"


def test_kept_rows_are_de_identified(state):
    prefix = "# maintainer: jane.doe@example.org\nimport math\n\n\ndef area(r):\n    "
    out = filter_row(row(prefix=prefix), state)
    assert out["drop_reason"] is None and "jane.doe" not in out["prefix"] and "<EMAIL>" in out["prefix"]
    assert state.pii_found["EMAIL_ADDRESS"] == 1


def test_every_text_column_of_a_kept_row_is_de_identified(state):
    """The proposal and the accepted text held what the user edited away; the path names the user."""
    leaked = "server.login(user, password)  # jane.doe@acme-corp.io AKIAIOSFODNN7EXAMPLE\n"
    prefix = "import smtplib\n\n\ndef send(server, user, password):\n    "
    out = filter_row(row(target="server.login(user, password)\n", prefix=prefix, suffix="\n", decision="accepted",
                         proposal=leaked, accepted_text=leaked, source_kind="accepted_edited", es=0.4,
                         path="/home/jane.doe/work/mailer/send.py", repo="/home/jane.doe/work/mailer"), state)
    assert out["drop_reason"] is None
    stored = " ".join(str(v) for v in out.values())
    assert "jane.doe" not in stored and "AKIAIOSFODNN7EXAMPLE" not in stored, out
    assert out["proposal"] == "server.login(user, password)  # <EMAIL> <KEY>\n" == out["accepted_text"]
    assert out["path"] == "/home/<USER>/work/mailer/send.py"


def test_a_value_found_in_the_document_is_replaced_in_the_proposal(state):
    # The proposal alone does not say that the literal is a password; its document does.
    prefix = 'DB_PASSWORD = "Zx9!qL2#vR7@pT4"\n\n\ndef connect():\n    '
    out = filter_row(row(target="return open_db(DB_PASSWORD)\n", prefix=prefix, suffix="\n",
                         proposal='return open_db("Zx9!qL2#vR7@pT4")\n'), state)
    assert out["drop_reason"] is None and "Zx9!qL2" not in out["proposal"] and "Zx9!qL2" not in out["prefix"]


def test_redaction_keeps_the_kept_target_parseable(state):
    # Presidio's e-mail pattern took `email='` with it: `user(<EMAIL>')` was kept as code.
    out = filter_row(row(target="return user(email='jane@example.com', r=r)\n"), state)
    assert out["drop_reason"] is None and out["target"] == "return user(email='<EMAIL>', r=r)\n"


def test_a_target_that_redaction_breaks_is_dropped_as_a_syntax_error(state):
    # A card number written as an int: `<CARD>` is no expression.
    out = filter_row(row(target="return charge(4111111111111111, r)\n"), state)
    assert out["drop_reason"] == "syntax_error" and "4111111111111111" not in out["target"]


def test_the_context_window_is_whole_lines(state):
    # The leak check reads the kept text line by line: a window cut in a line would show it a piece
    # of a line that the redactor never read as such.
    suffix = "\n" + "".join(f"value_{i} = compute({i}, r)  # step {i}\n" for i in range(200))
    out = filter_row(row(suffix=suffix), state)
    assert out["drop_reason"] is None and out["suffix"].endswith("\n") and len(out["suffix"]) <= 2_000
    assert out["suffix"] == suffix[: len(out["suffix"])] and len(out["suffix"]) > 1_900
