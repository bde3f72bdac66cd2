"""What a completion is, whoever proposes it: the request at a cursor, when a proposal is whole,
and where it ends.

A trigger in the middle of a line completes that line; a trigger at the start of a line (only
indentation typed) completes a block: lines until the block the cursor is in ends, at most
`max_lines` (`MAX_LINES` unless told), cut at a syntactic boundary. Where a block ends is the language's: where the code
dedents below the cursor's indentation (Python), or where a bracket closes the block the cursor is
in (the brace languages; `languages.Language.blocks`). The same rule cuts a model's proposal
(`model`) and the region a user finally kept (`harvest`), so that the two compare.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from echo_dagster.languages import language
from echo_dagster.syntax import bracket_lines, indent_of, trim_to_boundary

# The most lines a block proposal takes, and a block target: the model, the server and the harvest
# share it, so that what is proposed and what it is judged against have the same bound.
MAX_LINES = 4


@dataclass(frozen=True)
class CompletionRequest:
    prefix: str
    suffix: str = ""
    language: str = "python"


def trigger_points(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, bool]]:
    """Where a developer asks for a completion in text[start:end], as (offset, mid_line): at each
    line of code after its indentation (comment lines aside), and in a line after `:`, `(`, `=`
    or `,` (and a space) where more of the line follows."""
    points = []
    pos = start
    for line in text[start:end].splitlines(keepends=True):
        body = line.strip()
        if body and not body.startswith(("#", "//")):
            points.append((pos + len(line) - len(line.lstrip(" \t")), False))
            points += [(pos + m.end(), True) for m in re.finditer(r"[:(=,]\s?", line.rstrip("\n"))
                       if m.end() < len(line.rstrip())]
        pos += len(line)
    return points


def is_mid_line(prefix: str) -> bool:
    return bool(prefix.rpartition("\n")[2].strip())


def is_whole(request: CompletionRequest, text: str, max_lines: int) -> bool:
    if is_mid_line(request.prefix):
        return "\n" in text
    complete_lines = text.split("\n")[:-1]
    if len(complete_lines) >= max_lines:
        return True
    return block_end(request, complete_lines) < len(complete_lines)


def block_end(request: CompletionRequest, lines: list[str]) -> int:
    """How many of `lines` (inserted at the start of a line, the typed indentation included in the
    first or not) belong to the block at the cursor: the index of the first later line that ends it,
    else all of them. The first line never ends it (it may close a block and open the next)."""
    indent = indent_of(request.prefix.rpartition("\n")[2])
    depths = None
    if language(request.language).blocks == "brackets":
        depths = bracket_lines([line + "\n" for line in lines], request.language)
    if depths is None:
        return next((n for n, line in enumerate(lines) if n and line.strip() and indent_of(line) < indent),
                    len(lines))
    # The cursor's depth: 0, or where the first line leaves it when it closes the block (`} else {`).
    # A line ends the block when it opens with a bracket that closes below that depth (not a `)` in
    # the prose of a comment still being written, which the piece alone cannot tell from code).
    base = min(0, depths[1][0]) if len(depths) > 1 else 0
    for n, (line, (start, low, quoted)) in enumerate(zip(lines, depths)):
        if not n or quoted or not line.strip():
            continue
        if low < base and line.lstrip()[0] in ")]}" or start == base and indent_of(line) < indent:
            return n
    return len(lines)


def postprocess(request: CompletionRequest, text: str, max_lines: int, tree=None) -> str:
    """The proposal to insert at the cursor: one line for a mid-line trigger, else the block's
    lines up to the block's end, cut at a syntactic boundary. `tree`: see `trim_to_boundary`."""
    if is_mid_line(request.prefix):
        return text.split("\n", 1)[0].rstrip()
    typed = request.prefix.rpartition("\n")[2]
    parts = text.split("\n")
    terminated = len(parts) > 1
    lines = parts[:-1] if terminated else parts  # a last line without its newline was cut short
    while lines and not lines[0].strip():
        lines = lines[1:]  # a proposal does not open with blank lines
    lines = lines[:max_lines]
    kept = [line.rstrip() for line in lines[: block_end(request, lines)]]
    while kept and not kept[-1].strip():
        kept.pop()
    if not kept:
        return ""
    kept[0] = kept[0][len(typed):] if kept[0].startswith(typed) else kept[0].lstrip()
    proposal = "\n".join(kept) + ("\n" if terminated else "")
    return trim_to_boundary(request.prefix, proposal, request.language, tree=tree)
