"""Syntax with tree-sitter: cut a piece of code inserted at a cursor at a syntactic boundary.

Shared by proposal post-processing (model/) and harvest trimming: the same rule decides where a
model's proposal and a user's final code end.
"""

from __future__ import annotations

import functools
import importlib

# Language names (as events carry them) to (tree-sitter grammar package, its function); the project
# installs these; another language works when its `tree_sitter_<name>` package is installed.
_GRAMMARS = {"python": ("tree_sitter_python", "language"), "javascript": ("tree_sitter_javascript", "language"),
             "typescript": ("tree_sitter_typescript", "language_typescript"),
             "tsx": ("tree_sitter_typescript", "language_tsx"), "go": ("tree_sitter_go", "language"),
             "rust": ("tree_sitter_rust", "language"), "java": ("tree_sitter_java", "language")}
EXTENSIONS = {".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
              ".jsx": "javascript", ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
              ".go": "go", ".rs": "rust", ".java": "java", ".c": "c", ".h": "c", ".cpp": "cpp", ".rb": "ruby"}


# Other names clients give them (VS Code's language ids, which Tabby and Continue send).
_ALIASES = {"typescriptreact": "tsx", "javascriptreact": "javascript", "js": "javascript", "jsx": "javascript",
            "ts": "typescript", "golang": "go", "rs": "rust", "py": "python", "python3": "python"}


def parser_for(language: str):
    """A tree-sitter parser, or None where no grammar is installed for the language."""
    return _parser(_ALIASES.get(language, language))


@functools.cache
def _parser(language: str):
    from tree_sitter import Language, Parser

    package, function = _GRAMMARS.get(language, (f"tree_sitter_{language}", "language"))
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
    spans = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            spans.append((node.start_byte, node.end_byte))
        elif node.has_error:
            stack.extend(node.children)
    return spans


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
    head = data[_window_start(tree, data, len(data), indent, language) :].decode()
    if language == "python" and head[:1] in (" ", "\t"):
        head = "if 1:\n" + head  # an indented definition is a block of its own
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


# Definitions that parse (and in Python compile) on their own, wherever they stand: a `return` or a
# `break` needs the function or loop around it, and the definition holds those; a method of a class
# whose closing brace is still to come parses alone.
_FUNCTIONS_JS = {"function_declaration", "method_definition", "class_declaration", "arrow_function"}
_SELF_CONTAINED = {"python": {"function_definition", "class_definition", "decorated_definition"},
                   "javascript": _FUNCTIONS_JS, "typescript": _FUNCTIONS_JS, "tsx": _FUNCTIONS_JS,
                   "go": {"function_declaration", "method_declaration"},
                   "rust": {"function_item", "impl_item"},
                   "java": {"method_declaration", "constructor_declaration", "class_declaration"}}


def _window_start(tree, data: bytes, at: int, indent: int, language: str) -> int:
    """The byte offset of the line where the innermost self-contained node around `at` starts,
    among those indented no deeper than the inserted lines (else the last top-level node that
    starts before `at`)."""
    kinds = _SELF_CONTAINED.get(language, set())
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


def compiles(code: str) -> bool:
    try:
        compile(code, "<code>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True
