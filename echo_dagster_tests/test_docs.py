"""The documentation says what the repository holds: a README a newcomer reads top to bottom, links
and file names that lead somewhere, the configuration table that `env.VARIABLES` is, and a code map
with every module. Fast, no network."""

import re

import pytest

from echo_dagster import env
from echo_dagster_tests.conftest import REPO

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.MULTILINE)


def section(text: str, title: str) -> str:
    """The text under `## <title>` up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"README has no section '## {title}'"
    return match.group(1)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_the_readme_is_short_enough_to_read_top_to_bottom():
    lines = README.read_text().count("\n")
    assert lines <= 420, f"README.md has {lines} lines; move details to docs/"


def test_the_design_benchmarks_operations_and_deployment_docs_exist():
    assert {p.name for p in DOCS} >= {"design.md", "benchmarks.md", "operations.md", "deployment.md"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page):
    text = page.read_text()
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in {slug(h) for h in HEADING.findall(file.read_text())}:
            broken.append(f"{target}: no heading with anchor #{anchor} in {file.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_docs_page_and_benchmark_named_exists(page):
    text = page.read_text()
    named = set(re.findall(r"\bdocs/[\w-]+\.md\b", text)) | set(re.findall(r"\bbenchmarks/[\w-]+\.py\b", text))
    missing = sorted(name for name in named if not (REPO / name).is_file())
    assert not missing, f"{page.name} names files that do not exist: {missing}"


def test_the_configuration_table_lists_exactly_the_variables_env_reads():
    table = section(README.read_text(), "Configuration")
    listed = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", table, re.MULTILINE)
    assert sorted(listed) == sorted(v.name for v in env.VARIABLES)
    assert len(listed) == len(set(listed)), "a variable is listed twice"


def test_the_code_map_names_every_module_and_package():
    code_map = section(README.read_text(), "Where things are")
    root = REPO / "echo_dagster"
    entries = [p.relative_to(root).as_posix() for p in root.rglob("*.py")
               if "__pycache__" not in p.parts and p.name != "__init__.py"]
    entries += [p.relative_to(root).as_posix() + "/" for p in root.iterdir() if (p / "__init__.py").is_file()]
    missing = sorted(e for e in entries if f"`{e}`" not in code_map)
    assert not missing, f"README's code map lacks {missing}"


def test_the_readme_makes_no_claim_the_repository_cannot_back():
    text = README.read_text()
    assert "../shared" not in text, "a clone has no ../shared: the design is docs/design.md"
    assert "accelerate launch" not in text, "there is no entry point to launch; batches are not sharded"
