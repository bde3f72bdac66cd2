"""Languages beyond Python: each installed grammar parses, cuts a proposal at a syntactic boundary,
and finds the comments and string literals that de-identification reads."""

import pytest

from echo_dagster.clients.records import language_of
from echo_dagster.filters.deidentify import find, literal_spans, prose_spans
from echo_dagster.syntax import error_spans, parser_for, trim_to_boundary

# (language, a file name, valid code, the same broken, a function's opening, a body that closes it
# and then starts another, a line with a comment by a person and a string holding an e-mail address)
SAMPLES = {
    "javascript": ("area.js", "const x = [1, 2];\n", "const x = [1, 2;\n", "function area(r) {\n  ",
                   "const a = Math.PI * r * r;\n  return a;\n}\nfunction next(\n",
                   '// Reviewed by Margaret Hamilton\nconst owner = "jane.doe@example.com";\n'),
    "typescript": ("area.ts", "let x: number = 1;\n", "let x: number = ;\n", "function area(r: number): number {\n  ",
                   "const a = Math.PI * r * r;\n  return a;\n}\nfunction next(\n",
                   '// Reviewed by Margaret Hamilton\nconst owner: string = "jane.doe@example.com";\n'),
    "tsx": ("Card.tsx", "const c = <div>{1}</div>;\n", "const c = <div>{1</div>;\n", "function Card(): JSX.Element {\n  ",
            "const a = <div />;\n  return a;\n}\nfunction next(\n",
            '// Reviewed by Margaret Hamilton\nconst owner = "jane.doe@example.com";\n'),
    "go": ("area.go", "package main\n\nvar x = 1\n", "package main\n\nvar x = \n", "package main\n\nfunc area(r float64) float64 {\n\t",
           "a := 3.14 * r * r\n\treturn a\n}\nfunc next(\n",
           'package main\n\n// Reviewed by Margaret Hamilton\nvar owner = "jane.doe@example.com"\n'),
    "rust": ("area.rs", "fn main() { let x = 1; }\n", "fn main() { let x = ; }\n", "fn area(r: f64) -> f64 {\n    ",
             "let a = 3.14 * r * r;\n    a\n}\nfn next(\n",
             '// Reviewed by Margaret Hamilton\nconst OWNER: &str = "jane.doe@example.com";\n'),
    "java": ("Area.java", "class A { int x = 1; }\n", "class A { int x = ; }\n", "class Area {\n  double area(double r) {\n    ",
             "double a = Math.PI * r * r;\n    return a;\n  }\n  void next(\n",
             'class A {\n  // Reviewed by Margaret Hamilton\n  String owner = "jane.doe@example.com";\n}\n'),
}


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_each_language_parses_and_tells_broken_code(language):
    path, valid, broken, *_ = SAMPLES[language]
    assert parser_for(language) is not None and language_of(path) == language
    assert error_spans(valid.encode(), language) == []
    assert error_spans(broken.encode(), language)


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_a_proposal_is_cut_where_its_block_closes(language):
    *_, opening, body, _ = SAMPLES[language]
    cut = trim_to_boundary(opening, body, language)
    assert "next(" not in cut and cut.rstrip().endswith("}")


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_de_identification_reads_each_languages_comments_and_strings(language):
    code = SAMPLES[language][-1]
    comment, string = code.index("Margaret"), code.index("jane.doe")
    assert any(s <= comment < e for s, e in prose_spans(code, language))
    assert any(cs <= string < ce for _, _, cs, ce in literal_spans(code, language))
    found = {(f.entity, code[f.start:f.end]) for f in find(code, language)}
    assert ("EMAIL_ADDRESS", "jane.doe@example.com") in found
    assert any(entity == "PERSON" and "Hamilton" in text for entity, text in found)


# (language, the code before the cursor at the start of a line, the model's text, the proposal kept):
# where the block at the cursor ends in the brace languages, whatever the indentation says.
BLOCK_ENDS = [
    # A template literal's lines (and the brace in it) are the string's, not the block's.
    ("javascript", "function f(x) {\n  if (x) {\n    ", "return `a\n}b`;\n  }\n}\n", "return `a\n}b`;\n"),
    ("go", "func f() string {\n\t", "x := `\n}`\n\treturn x\n}\nfunc g() {\n", "x := `\n}`\n\treturn x\n"),
    ("rust", "fn f() -> &'static str {\n    ", 'let s = r#"\n}"#;\n    s\n}\n', 'let s = r#"\n}"#;\n    s\n'),
    ("java", "class A {\n  String f() {\n    ", 'String s = """\n}\n""";\n    return s;\n  }\n}\n',
     'String s = """\n}\n""";\n    return s;\n'),
    # A closing brace ends the block at any indentation; a bracket's continuation lines do not.
    ("typescript", "function f(): number {\n  ", "const a = 1;\n  return a;\n  }\n  function g() {\n",
     "const a = 1;\n  return a;\n"),
    ("rust", "fn f() -> Vec<i32> {\n    ", "let v = vec![\n1,\n2];\n    v\n}\n", "let v = vec![\n1,\n2];\n    v\n"),
    # A first line that closes the block and opens the next: the next one's body, to its end.
    ("javascript", "if (x) {\n  a();\n", "} else {\n  b();\n}\nc();\n", "} else {\n  b();\n"),
    # Rust's tail expression (no `;`) ends a block whole.
    ("rust", "fn f(v: Vec<u8>) -> *mut u8 {\n    ", "let ptr = v.as_ptr();\n    mem::forget(v);\n    ptr as *mut u8\n}\n",
     "let ptr = v.as_ptr();\n    mem::forget(v);\n    ptr as *mut u8\n"),
    # A template literal type's `${…}` is balanced.
    ("typescript", "function f(): void {\n  ", "const a = 1;\n  type R = `/${string}`;\n  use(a);\n}\n",
     "const a = 1;\n  type R = `/${string}`;\n  use(a);\n"),
    # At the cursor's own depth indentation still tells: a `case` label ends the case before it.
    ("java", "class A {\n  void f(int x) {\n    switch (x) {\n      case 1:\n        ",
     "a();\n        break;\n      case 2:\n        b();\n    }\n", "a();\n        break;\n"),
]


@pytest.mark.parametrize(("language", "prefix", "text", "kept"), BLOCK_ENDS)
def test_a_block_ends_where_its_bracket_closes(language, prefix, text, kept):
    from echo_dagster.completion import CompletionRequest, is_whole, postprocess

    request = CompletionRequest(prefix, "", language)
    assert postprocess(request, text, max_lines=12) == kept
    # Generation stops at the same line: whole once the line that ends the block is complete.
    assert text.startswith(kept) and not is_whole(request, kept, 12)
    assert is_whole(request, kept + text[len(kept):].split("\n")[0] + "\n", 12)


def test_a_comment_is_not_ended_by_its_prose():
    from echo_dagster.completion import CompletionRequest, is_whole, postprocess

    # Being written: generation does not stop at the `)` of "a)".
    assert not is_whole(CompletionRequest("class A {\n  ", "", "typescript"), "/**\n   * Steps:\n   *  a) parse\n", 12)
    # A cursor inside a doc comment: the proposal keeps the comment to its end. (Generation, which
    # sees the piece without the comment's start, runs on to the line cap here; the cut is the same.)
    text = "* Cases:\n   *  1) both\n   *  2) otherwise\n   */\n  int f() {\n"
    assert postprocess(CompletionRequest("class A {\n  /**\n   ", "", "java"), text, 8) == text[: text.index("  int")]


def test_a_cut_does_not_end_a_statement_before_its_semicolon():
    # Tree-sitter reports the `;` missing at the end of such a cut: an error, unlike the missing
    # closers of the blocks open before the cursor.
    prefix = "class A {\n  void f() {\n    "
    assert trim_to_boundary(prefix, "int a = 1;\n    foo(a)\n        .bar()\n", "java") == "int a = 1;\n"
    assert trim_to_boundary(prefix, "int a = 1;\n    foo(a)\n        .bar();\n", "java").endswith(".bar();\n")


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_lines_are_what_splitlines_calls_lines(language):
    """A form feed or a carriage return splits lines for `str.splitlines`: every rule counts them so."""
    from echo_dagster.completion import CompletionRequest, postprocess

    text = "a = 1\x0c\nb = 2\r\nc = 3\n" if language == "python" else "a();\x0c\nb();\r\nc();\n}\n"
    prefix = "def f():\n    " if language == "python" else "function f() {\n  "
    assert trim_to_boundary(prefix, text, language).startswith("a")
    assert postprocess(CompletionRequest(prefix, "", language), text, 8).startswith("a")


def test_the_names_clients_give_languages_find_their_grammars():
    assert parser_for("typescriptreact") is parser_for("tsx") and parser_for("golang") is parser_for("go")


# Corpora newer than the base model where the registries have them: zod 4 (2025, TypeScript sources
# and its JavaScript build), cobra (Go) and semver (Rust) from Debian, the JDK's java.util.function.
CORPORA = {"npm:zod@4.6.7": {"typescript", "javascript"}, "deb:golang-github-spf13-cobra-dev": {"go"},
           "deb:librust-semver-dev": {"rust"},
           "deb:openjdk-17-source#usr/lib/jvm/openjdk-17/lib/src/java.base/java/util/function": {"java"}}


@pytest.mark.parametrize("source", sorted(CORPORA))
def test_each_languages_corpus_goes_through_simulate_and_the_harvest(source, echo_home):
    from datetime import date

    import dagster as dg
    from dagster_aws.s3 import S3Resource

    from echo_dagster import warehouse
    from echo_dagster.corpus import scan_source
    from echo_dagster.defs.filtered_dataset_asset import filtered_dataset
    from echo_dagster.defs.raw_sessions_asset import raw_sessions
    from echo_dagster.defs.refined_targets_asset import refined_targets
    from echo_dagster.defs.resources import LandingZone, OptOutList, Warehouse
    from echo_dagster.landing import LocalLandingStore
    from echo_dagster.simulate import oracle
    from echo_dagster.simulate.run import SimulationSpec, simulate

    files = scan_source(source).files
    assert {f.language for f in files} == CORPORA[source]
    propose = oracle.half_right([f.text for f in files])
    spec = SimulationSpec(source=source, start=date(2026, 11, 2), days=1, users=4, sessions_per_user_day=2, seed=3)
    simulate(spec, LocalLandingStore(echo_home / "landing"), LocalLandingStore(echo_home / "truth"), propose, "t")
    resources = {"landing": LandingZone(url=str(echo_home / "landing"), s3=S3Resource()),
                 "warehouse": Warehouse(path=str(echo_home / "wh.duckdb")),
                 "opt_out": OptOutList(path=str(echo_home / "opt_out.txt"))}
    result = dg.materialize([raw_sessions, refined_targets, filtered_dataset], partition_key="2026-11-02",
                            resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    with warehouse.connect(echo_home / "wh.duckdb", read_only=True) as con:
        kept = dict(con.execute("SELECT language, count(*) FROM filtered_dataset WHERE drop_reason IS NULL "
                                "GROUP BY 1").fetchall())
        targets = con.execute("SELECT count(*) FROM refined_targets WHERE target IS NOT NULL").fetchone()[0]
    assert targets > 0 and kept and set(kept) <= CORPORA[source]


def test_a_mixed_corpus_names_each_source_as_a_repository(echo_home):
    from echo_dagster.corpus import scan_source

    files = scan_source("npm:zod@4.6.7,deb:librust-semver-dev").files
    assert {f.path.split("/")[0] for f in files} == {"npm_zod@4.6.7", "deb_librust-semver-dev"}
    with pytest.raises(ValueError, match="npm:no-such-package-echo-dagster"):
        scan_source("npm:no-such-package-echo-dagster@0.0.1")


@pytest.mark.parametrize("source", sorted(CORPORA))
def test_each_language_is_trained_on_and_measured(source, echo_home, tiny_model_dir, tmp_path):
    """simulate → harvest → filters → train → evaluate, small: the tiny model trained on the language's
    harvested rows and measured, beside the base, on its held-out rows."""
    from echo_dagster.corpus import scan_source
    from echo_dagster.experiment.run import run_experiment
    from echo_dagster.simulate import oracle
    from echo_dagster_tests.test_experiment import tiny

    propose = oracle.half_right([f.text for f in scan_source(source).files])
    spec = tiny(tiny_model_dir, source=source, users=6, eval_users=3, arms=("echo",), replay_completions=0,
                stdlib_lines=0)
    result = run_experiment(spec, tmp_path / "exp", tmp_path / "models", log=lambda _: None, propose=propose)
    assert result.training["echo"]["examples"] > 0 and result.training["echo"]["steps"] > 0
    [base, echo] = result.results
    assert [s.completion_id for s in base.scored] == [s.completion_id for s in echo.scored] and base.scored
    assert set(base.by_language) <= CORPORA[source]
    # The report gives each language's base and Echo figures and their paired differences, with the files behind them.
    lifts = result.comparisons["echo"]["vs_base_by_language"]
    assert set(lifts) == set(base.by_language)
    assert all(lift["kept_chars"][1] <= lift["kept_chars"][2] and lift["files"] > 0 for lift in lifts.values())
    assert all(f"<td>{language}</td>" in result.page.read_text() for language in lifts)


def test_near_duplicates_leave_out_each_languages_own_comments():
    from echo_dagster.filters.pipeline import minhash

    def same(a: str, b: str, language: str) -> bool:
        return minhash(a, language).jaccard(minhash(b, language)) == 1.0

    assert same("x = f(a, b)  # one\n", "x = f(a, b)  # two\n", "python")
    assert same("let x = f(a, b); // one\n", "let x = f(a, b); // two\n", "typescript")
    # `#` is code there: a private field, an attribute.
    assert not same("this.#count = f(a, b);\n", "this.#total = g(c, d);\n", "javascript")
    assert not same("#[derive(Debug)]\nstruct A;\n", "#[derive(Clone)]\nstruct A;\n", "rust")


def test_the_experiment_job_measures_a_mixed_corpus_language_by_language(echo_home, tiny_model_dir):
    """`echo-dagster experiment --config source=<a,b>`: one run over two languages, the asset's
    metadata a table of each language's base and Echo acceptance and Echo's paired difference."""
    import dagster as dg

    from echo_dagster.defs.experiment_asset import experiment_report

    config = {"base_model": str(tiny_model_dir), "source": "deb:librust-semver-dev,deb:golang-github-spf13-cobra-dev",
              "days": 1, "users": 6, "eval_users": 3, "sessions_per_user_day": 2, "eval_rows": 60,
              "replay_completions": 0, "humaneval_lines": 0, "stdlib_lines": 0, "arms": ["echo"], "lora_r": 4,
              "lora_alpha": 8, "batch_size": 4, "context_tokens": 64, "max_target_tokens": 16, "max_steps": 4}
    result = dg.materialize([experiment_report], instance=dg.DagsterInstance.ephemeral(),
                            run_config={"ops": {"experiment_report": {"config": config}}})
    [materialization] = result.asset_materializations_for_node("experiment_report")
    table = materialization.metadata["by_language"].value
    header, *rows = [line for line in table.splitlines() if not line.startswith("| ---")]
    assert header.split(" | ")[3:] == ["base", "Echo", "Echo − base |"] and header.split(" | ")[2] == "files"
    assert {row.split(" | ")[0].strip("| ") for row in rows} == {"go", "rust"}
