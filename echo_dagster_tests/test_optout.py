import os

import pytest

from echo_dagster import optout


def test_ids_are_the_rest_of_the_line_with_spaces_and_any_unicode(tmp_path):
    path = tmp_path / "opt_out.txt"
    path.write_text("# who left\nuser:jane doe\nuser:zoë\n\n  tenant:acme corp  \n", encoding="utf-8")
    listed = optout.load(path)
    assert listed.users == {"jane doe", "zoë"} and listed.tenants == {"acme corp"}
    assert listed.covers("zoë", "other") and listed.covers("x", "acme corp") and not listed.covers("zoe", "acme")
    assert listed.subjects() == [("tenant_id", "acme corp"), ("user_id", "jane doe"), ("user_id", "zoë")]


@pytest.mark.parametrize("bad", ["jane", "user:", "person:jane", "user jane"])
def test_a_malformed_line_is_an_error_naming_file_and_line(tmp_path, bad):
    path = tmp_path / "opt_out.txt"
    path.write_text(f"user:ok\n{bad}\n")
    with pytest.raises(optout.OptOutError, match=r"opt_out.txt:2: expected 'user:<id>' or 'tenant:<id>'"):
        optout.load(path)


def test_a_missing_file_is_an_empty_list(tmp_path):
    assert not optout.load(tmp_path / "nothing.txt")


def test_a_watched_file_reports_its_problem_until_it_is_fixed(tmp_path):
    path = tmp_path / "opt_out.txt"
    watched = optout.watch(path)
    assert watched.value() == optout.OptOut() and watched.problem() is None
    path.write_text("user:a\nbroken\n")
    with pytest.raises(optout.OptOutError):
        watched.value()
    assert "opt_out.txt:2" in str(watched.problem()) and watched.problem().public().startswith("opt_out.txt:2:")
    path.write_text("user:a\nuser:b\n")
    os.utime(path, ns=(1, 10**18))  # a changed mtime, whatever the file system's resolution
    assert watched.value().users == {"a", "b"} and watched.problem() is None
