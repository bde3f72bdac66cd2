"""What a completion is, whoever proposes it: the request at a cursor, when a proposal is whole,
and where it ends.

A trigger in the middle of a line completes that line; a trigger at the start of a line (only
indentation typed) completes a block: lines until the code dedents below the cursor's indentation,
at most `max_lines`, cut at a syntactic boundary. The same rule cuts a model's proposal (`model`)
and the region a user finally kept (`harvest`), so that the two compare.
"""

from __future__ import annotations

from dataclasses import dataclass

from echo_dagster.syntax import indent_of, trim_to_boundary


@dataclass(frozen=True)
class CompletionRequest:
    prefix: str
    suffix: str = ""
    language: str = "python"


def is_mid_line(prefix: str) -> bool:
    return bool(prefix.rpartition("\n")[2].strip())


def is_whole(request: CompletionRequest, text: str, max_lines: int) -> bool:
    if is_mid_line(request.prefix):
        return "\n" in text
    lines = text.split("\n")
    complete_lines = lines[:-1]
    if len(complete_lines) >= max_lines:
        return True
    indent = indent_of(request.prefix.rpartition("\n")[2])
    return any(line.strip() and indent_of(line) < indent for line in complete_lines[1:])


def postprocess(request: CompletionRequest, text: str, max_lines: int, tree=None) -> str:
    """The proposal to insert at the cursor: one line for a mid-line trigger, else the block's
    lines up to a dedent, cut at a syntactic boundary. `tree`: see `trim_to_boundary`."""
    if is_mid_line(request.prefix):
        return text.split("\n", 1)[0].rstrip()
    typed = request.prefix.rpartition("\n")[2]
    indent = indent_of(typed)
    parts = text.split("\n")
    terminated = len(parts) > 1
    lines = parts[:-1] if terminated else parts  # a last line without its newline was cut short
    while lines and not lines[0].strip():
        lines = lines[1:]  # a proposal does not open with blank lines
    kept = []
    for n, line in enumerate(lines[:max_lines]):
        if n and line.strip() and indent_of(line) < indent:
            break
        kept.append(line.rstrip())
    while kept and not kept[-1].strip():
        kept.pop()
    if not kept:
        return ""
    kept[0] = kept[0][len(typed):] if kept[0].startswith(typed) else kept[0].lstrip()
    proposal = "\n".join(kept) + ("\n" if terminated else "")
    return trim_to_boundary(request.prefix, proposal, request.language, tree=tree)
