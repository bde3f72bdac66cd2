"""Syntax with tree-sitter: cut a piece of code inserted at a cursor at a syntactic boundary.

Shared by proposal post-processing (model/) and harvest trimming: the same rule decides where a
model's proposal and a user's final code end.
"""

from __future__ import annotations

import functools
import importlib

from echo_dagster import languages


def parser_for(language: str):
    """A tree-sitter parser, or None where no grammar is installed for the language."""
    return _parser(languages.language(language).name)


@functools.cache
def _parser(name: str):
    from tree_sitter import Language, Parser

    package, function = languages.language(name).grammar
    try:
        grammar = importlib.import_module(package)
    except ImportError:
        return None
    return Parser(Language(getattr(grammar, function)()))


def parse(code: bytes, language: str):
    """The tree-sitter tree, or None without a grammar."""
    parser = parser_for(language)
    return None if parser is None else parser.parse(code)


def error_spans(code: bytes, language: str, tree=None) -> list[tuple[int, int]] | None:
    """Byte spans of ERROR and MISSING nodes, or None without a grammar. `tree`: `code` parsed already."""
    tree = tree or parse(code, language)
    if tree is None:
        return None
    return [(node.start_byte, node.end_byte) for node in _error_nodes(tree)]


def _error_nodes(tree):
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            yield node
        elif node.has_error:
            stack.extend(node.children)


def trim_to_boundary(prefix: str, text: str, language: str, max_lines: int | None = None, tree=None) -> str:
    """The longest whole-line cut of `text` (inserted after `prefix`) with the fewest syntax errors
    inside it: a block is not cut in the middle of a bracket or a statement when a shorter or longer
    cut closes it. A single line is left as it is. `tree`: a parse of a text that starts with
    `prefix`, when the caller has one (the statement the cursor is in is found in it)."""
    lines = text.splitlines(keepends=True)
    if max_lines is not None:
        lines = lines[:max_lines]
    if len(lines) <= 1:
        return "".join(lines)
    data = prefix.encode()
    tree = tree or parse(data + "".join(lines).encode(), language)
    if tree is None:
        return "".join(lines)
    # Errors after the cursor depend on the statement around it, not on the rest of the file
    # above: each cut is parsed (and compiled) from that statement's line on.
    typed = prefix[prefix.rfind("\n") + 1 :]
    indent = min((indent_of(line) for line in [typed + lines[0]] + lines[1:] if line.strip()), default=0)
    rules = languages.language(language)
    head = data[_window_start(tree, data, len(data), indent, rules.self_contained) :].decode()
    if rules.indented_block and head[:1] in (" ", "\t"):
        head = "if 1:\n" + head  # an indented definition is a block of its own
    start = len(head.encode())
    # Brackets a cut opens and leaves open: the cut ends inside them. (Those open before the cursor
    # are no error of a cut: tree-sitter reports their closers missing at the end of every cut.)
    depths = bracket_lines([*lines, ""], language)  # the last entry: the depth at the end
    unfinished = _CLOSING | ({";"} if rules.tail_expressions else set())  # missing at a cut's end: no error
    best, best_errors, low = "", None, 0
    for n in range(1, len(lines) + 1):
        candidate = "".join(lines[:n])
        code = (head + candidate).encode()
        end = len(code.rstrip())
        errors = sum(1 for node in _error_nodes(parse(code, language))
                     if (node.end_byte > start or node.start_byte == node.end_byte >= start)
                     and not (node.is_missing and node.type in unfinished and node.start_byte >= end))
        low = min(low, depths[n - 1][1])
        errors += depths[n][0] > low
        errors += not rules.compiles(head + candidate)  # tree-sitter misses Python's indentation errors
        if best_errors is None or errors <= best_errors:
            best, best_errors = candidate, errors
    return best


def _window_start(tree, data: bytes, at: int, indent: int, kinds: frozenset[str]) -> int:
    """The byte offset of the line where the innermost self-contained node around `at` starts,
    among those indented no deeper than the inserted lines (else the last top-level node that
    starts before `at`)."""
    node, start = tree.root_node, 0
    while True:
        before = [child for child in node.children if child.start_byte < at]
        if not before:
            return start
        node = before[-1]
        line = data.rfind(b"\n", 0, node.start_byte) + 1
        if node.parent == tree.root_node:
            start = line
        elif node.type in kinds and not data[line : node.start_byte].strip() and node.start_byte - line <= indent:
            start = line


def indent_of(line: str) -> int:
    """Columns of leading spaces and tabs."""
    return len(line) - len(line.lstrip(" \t"))


# A template literal type's `${` is one token (in a template string it is inside the string).
_OPENING, _CLOSING = frozenset({"(", "[", "{", "${"}), frozenset({")", "]", "}"})
_BRACKETS = _OPENING | _CLOSING


def bracket_lines(lines: list[str], language: str) -> list[tuple[int, int, bool]] | None:
    """Per line of a piece of code parsed alone (`lines` joined make it): the bracket depth at its
    start and the lowest within it, counted from the piece's start (brackets in strings and comments
    left out), and whether it starts inside a string or a comment; None without a grammar."""
    data = "".join(lines).encode()
    tree = parse(data, language)
    if tree is None:
        return None
    steps, opaque = [], []  # (byte, +1 or -1); (start, end) of strings and comments
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if "string" in node.type or "comment" in node.type:
            opaque.append((node.start_byte, node.end_byte))  # a template's `${…}` is balanced within
        elif node.child_count:
            stack.extend(node.children)
        elif not node.is_missing and node.type in _BRACKETS:
            steps.append((node.start_byte, 1 if node.type in _OPENING else -1))
    steps.sort()
    out, depth, i, start = [], 0, 0, 0
    for line in lines:
        end = start + len(line.encode())
        low, first = depth, depth
        while i < len(steps) and steps[i][0] < end:
            depth += steps[i][1]
            low = min(low, depth)
            i += 1
        out.append((first, low, any(s < start < e for s, e in opaque)))
        start = end
    return out
