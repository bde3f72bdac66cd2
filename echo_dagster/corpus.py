"""Real code to replay: the files of a folder, of an installed package, or of a package fetched from
a registry the machine reaches, once, into `$ECHO_HOME/corpora/`:

    dagster_shared                       an installed Python package (the default corpus)
    /path/to/folder                      any folder
    npm:zod@4.6.7                        an npm package's published files (`npm pack`), e.g. TypeScript sources
    deb:golang-github-spf13-cobra-dev    a Debian package's files (`apt-get download`): Go sources under
                                         /usr/share/gocode, Rust crates under /usr/share/cargo/registry,
                                         Java's under a src.zip (openjdk-17-source), unpacked
    deb:openjdk-17-source#usr/lib/…/util one folder of a fetched package
    npm:zod@4.6.7,deb:…                  several at once: one corpus, each source a repository of it
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from echo_dagster import env
from echo_dagster.languages import EXTENSIONS
from echo_dagster.syntax import error_spans, parser_for

# Real code that installs with the project and is newer than the base model's training data
# (dagster-shared was split out of dagster in 2025): what the demo replays.
DEFAULT_CORPUS = "dagster_shared"


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative to the source root
    language: str
    text: str


@dataclass
class SourceScan:
    root: Path
    files: list[SourceFile]
    skipped: Counter = field(default_factory=Counter)  # reason -> files


def scan_source(source: str, *, max_bytes: int = 200_000, min_lines: int = 20) -> SourceScan:
    """Files of `source` (a folder, or the name of an installed package) that the simulator can
    replay; others are skipped and counted: binary, too_large, too_short, minified, unparseable, no_grammar."""
    sources = [s.strip() for s in source.split(",") if s.strip()]
    roots = {name: _root(name) for name in sources}
    scan = SourceScan(roots[sources[0]] if len(sources) == 1 else Path(env.echo_home()) / "corpora", [])
    for name, root in roots.items():
        # Several sources: each one a repository of the corpus (its files' paths start with its name).
        label = "" if len(sources) == 1 else name.replace("/", "_").replace(":", "_") + "/"
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            language = EXTENSIONS.get(path.suffix)
            if language is None:
                continue
            reason, text = _check(path, language, max_bytes, min_lines)
            if reason:
                scan.skipped[reason] += 1
            else:
                scan.files.append(SourceFile(label + path.relative_to(root).as_posix(), language, text))
    if not scan.files:
        raise ValueError(f"source {source!r} ({root}) holds no code the simulator can replay "
                         f"(skipped: {dict(scan.skipped) or 'nothing found'})")
    return scan


def _root(source: str) -> Path:
    kind, _, name = source.partition(":")
    if kind in FETCHERS and name:
        name, _, below = name.partition("#")  # a folder of the package: deb:openjdk-17-source#…/java/util
        root = fetched(kind, name) / below
        if not root.is_dir():
            raise ValueError(f"source {source!r}: {below!r} is not a folder of {kind}:{name}")
        return root
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    try:
        spec = importlib.util.find_spec(source)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    raise ValueError(f"source {source!r} is neither a folder, an installed package, npm:<package>@<version> nor "
                     "deb:<package>")


def fetched(kind: str, name: str) -> Path:
    """The files of a registry's package, fetched once into $ECHO_HOME/corpora/<kind>/<name>/."""
    folder = env.echo_home() / "corpora" / kind / name.replace("/", "_")
    if not (folder / ".complete").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        with tempfile.TemporaryDirectory() as work:
            FETCHERS[kind](name, Path(work), folder)
        (folder / ".complete").touch()
    return folder


def _npm(name: str, work: Path, folder: Path) -> None:
    _run(["npm", "pack", "--silent", name, "--pack-destination", str(work)], f"npm:{name}")
    [tarball] = work.glob("*.tgz")
    shutil.unpack_archive(tarball, folder)  # its files under package/


def _deb(name: str, work: Path, folder: Path) -> None:
    try:
        _run(["apt-get", "download", name], f"deb:{name}", cwd=work)
    except ValueError:  # the package lists may be missing on a fresh machine
        _run(["apt-get", "update", "-q"], "apt-get update")
        _run(["apt-get", "download", name], f"deb:{name}", cwd=work)
    [package] = work.glob("*.deb")
    _run(["dpkg-deb", "-x", str(package), str(folder)], f"deb:{name}")
    for archive in folder.rglob("src.zip"):  # a JDK's sources
        with zipfile.ZipFile(archive) as sources:
            sources.extractall(archive.parent / "src")
        archive.unlink()


def _run(command: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise ValueError(f"{what}: {command[0]} is not installed") from None
    if done.returncode:
        raise ValueError(f"{what}: {' '.join(command)} failed: {(done.stderr or done.stdout).strip()[-400:]}")


FETCHERS = {"npm": _npm, "deb": _deb}


def _check(path: Path, language: str, max_bytes: int, min_lines: int) -> tuple[str | None, str]:
    if parser_for(language) is None:
        return "no_grammar", ""
    data = path.read_bytes()
    if len(data) > max_bytes:
        return "too_large", ""
    if b"\x00" in data:
        return "binary", ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "binary", ""
    if text.count("\n") < min_lines:
        return "too_short", ""
    # A minified bundle (react-dom's, shipped in dagster-webserver: 494 characters a line) is nobody's
    # code to complete. Codex's filter (a mean over 100 or a line over 1,000) would also drop
    # hand-written files with one long regex or table (zod's), so only the mean, at twice its bound.
    if len(text) / max(1, text.count("\n")) > 200:
        return "minified", ""
    if error_spans(data, language):
        return "unparseable", ""
    return None, text


def line_examples(files: list[SourceFile], count: int, seed: int, max_lines: int = 4) -> list[dict]:
    """`count` examples at random line starts of `files`: the file around them as prefix and
    suffix, the next 1–`max_lines` lines as target, shaped like refined targets (the typed
    indentation ends the prefix, the model writes the rest)."""
    if not files:
        raise ValueError("no file to cut examples from")
    import random

    rng = random.Random(seed)
    examples: list[dict] = []
    while len(examples) < count:
        file = rng.choice(files)
        lines = file.text.splitlines(keepends=True)
        at = rng.randrange(len(lines))
        taken = lines[at : at + rng.randint(1, max_lines)]
        target = "".join(taken)
        if not target.strip():
            continue
        indent = target[: len(target) - len(target.lstrip(" \t"))]
        examples.append({"completion_id": f"{file.path}:{at}", "path": file.path,
                         "prefix": "".join(lines[:at]) + indent,
                         "suffix": "".join(lines[at + len(taken) :]), "target": target[len(indent) :],
                         "language": file.language})
    return examples

