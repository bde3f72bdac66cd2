"""Syntax with tree-sitter: cut a piece of code inserted at a cursor at a syntactic boundary.

Shared by proposal post-processing (model/) and harvest trimming: the same rule decides where a
model's proposal and a user's final code end.
"""

from __future__ import annotations

import functools
import importlib

# Language names (as events carry them) to tree-sitter grammar packages; others work when their
# `tree_sitter_<name>` package is installed.
_GRAMMARS = {"python": "tree_sitter_python"}
EXTENSIONS = {".py": "python", ".pyi": "python", ".js": "javascript", ".ts": "typescript", ".go": "go",
              ".rs": "rust", ".java": "java", ".c": "c", ".h": "c", ".cpp": "cpp", ".rb": "ruby"}


@functools.cache
def parser_for(language: str):
    """A tree-sitter parser, or None where no grammar is installed for the language."""
    from tree_sitter import Language, Parser

    try:
        grammar = importlib.import_module(_GRAMMARS.get(language, f"tree_sitter_{language}"))
    except ImportError:
        return None
    return Parser(Language(grammar.language()))


def parse(code: bytes, language: str):
    """The tree-sitter tree, or None without a grammar."""
    parser = parser_for(language)
    return None if parser is None else parser.parse(code)


def error_spans(code: bytes, language: str, tree=None) -> list[tuple[int, int]] | None:
    """Byte spans of ERROR and MISSING nodes, or None without a grammar. `tree`: `code` parsed already."""
    tree = tree or parse(code, language)
    if tree is None:
        return None
    spans = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            spans.append((node.start_byte, node.end_byte))
        elif node.has_error:
            stack.extend(node.children)
    return spans


def trim_to_boundary(prefix: str, text: str, language: str, max_lines: int | None = None) -> str:
    """The longest whole-line cut of `text` (inserted after `prefix`) with the fewest syntax errors
    inside it: a block is not cut in the middle of a bracket or a statement when a shorter or longer
    cut closes it. A single line is left as it is."""
    lines = text.splitlines(keepends=True)
    if max_lines is not None:
        lines = lines[:max_lines]
    if len(lines) <= 1:
        return "".join(lines)
    data = prefix.encode()
    tree = parse(data + "".join(lines).encode(), language)
    if tree is None:
        return "".join(lines)
    # Errors after the cursor depend on the top-level statement the cursor is in, not on the rest
    # of the file above it: each cut is parsed (and compiled) from that statement's line on.
    head = data[_statement_line_start(tree, data, len(data)) :].decode()
    start = len(head.encode())
    best, best_errors = "", None
    for n in range(1, len(lines) + 1):
        candidate = "".join(lines[:n])
        spans = error_spans((head + candidate).encode(), language)
        errors = sum(1 for s, e in spans if e > start or (s == e and s >= start))
        if language == "python":
            errors += not compiles(head + candidate)  # tree-sitter misses indentation errors
        if best_errors is None or errors <= best_errors:
            best, best_errors = candidate, errors
    return best


def _statement_line_start(tree, data: bytes, at: int) -> int:
    """The byte offset of the line where the last top-level node that starts before `at` starts."""
    starts = [child.start_byte for child in tree.root_node.children if child.start_byte < at]
    return data.rfind(b"\n", 0, starts[-1]) + 1 if starts else 0


def compiles(code: str) -> bool:
    try:
        compile(code, "<code>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True
