"""What the pipeline knows of each language, in one table: every rule that differs by language
reads a property here (its grammar, where a block ends, its line comment, …), so a rule is not a
branch per language and a new language is one entry.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass


def python_compiles(code: str) -> bool:
    """Python's own parser: it sees bad indentation, which tree-sitter lets pass."""
    try:
        compile(code, "<code>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


@dataclass(frozen=True)
class Language:
    name: str
    grammar: tuple[str, str]  # the tree-sitter grammar's package and the function that returns it
    extensions: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()  # other names clients give it (VS Code's language ids)
    line_comment: str = "//"
    # Where a block proposed at the start of a line ends: "indentation" (where the code dedents below
    # the cursor) or "brackets" (where a bracket closes the block the cursor is in; indentation
    # decides only among lines at the cursor's depth, outside strings and comments: a `case` label).
    blocks: str = "brackets"
    # Definitions that parse on their own wherever they stand (a `return` needs the function around
    # it; a method of a class whose closing brace is still to come parses alone).
    self_contained: frozenset[str] = frozenset()
    # A check beyond tree-sitter's error nodes, where the language has one (read it by `compiles`).
    check: Callable[[str], bool] | None = None
    # A statement that puts a string into a name, as a developer pastes a secret into code: the
    # simulator plants secrets with it (and falls back to a comment where it does not parse).
    assignment: str = 'const {name} = "{value}";'
    indented_block: bool = False  # an indented piece parses only inside a block (Python's "if 1:")
    # A block's last expression takes no `;` (Rust): a cut that ends in one is whole, though the parse
    # of the cut, whose block is still open, reports the `;` missing.
    tail_expressions: bool = False

    def compiles(self, code: str) -> bool:
        """Whether the language's own check passes: always, for a language without one."""
        return self.check is None or self.check(code)


_JS_FUNCTIONS = frozenset({"function_declaration", "method_definition", "class_declaration", "arrow_function"})

LANGUAGES = {language.name: language for language in (
    Language("python", ("tree_sitter_python", "language"), (".py", ".pyi"), ("py", "python3"), line_comment="#",
             blocks="indentation", check=python_compiles, assignment='{name} = "{value}"', indented_block=True,
             self_contained=frozenset({"function_definition", "class_definition", "decorated_definition"})),
    Language("javascript", ("tree_sitter_javascript", "language"), (".js", ".mjs", ".cjs", ".jsx"),
             ("js", "jsx", "javascriptreact"), self_contained=_JS_FUNCTIONS),
    Language("typescript", ("tree_sitter_typescript", "language_typescript"), (".ts", ".mts", ".cts"), ("ts",),
             self_contained=_JS_FUNCTIONS),
    Language("tsx", ("tree_sitter_typescript", "language_tsx"), (".tsx",), ("typescriptreact",),
             self_contained=_JS_FUNCTIONS),
    Language("go", ("tree_sitter_go", "language"), (".go",), ("golang",), assignment='{name} := "{value}"',
             self_contained=frozenset({"function_declaration", "method_declaration"})),
    Language("rust", ("tree_sitter_rust", "language"), (".rs",), ("rs",), assignment='let {name} = "{value}";',
             self_contained=frozenset({"function_item", "impl_item"}), tail_expressions=True),
    Language("java", ("tree_sitter_java", "language"), (".java",), assignment='String {name} = "{value}";',
             self_contained=frozenset({"method_declaration", "constructor_declaration", "class_declaration"})),
    # Named, so that their files and events say what they are; they work where their grammar is installed.
    Language("c", ("tree_sitter_c", "language"), (".c", ".h")),
    Language("cpp", ("tree_sitter_cpp", "language"), (".cpp", ".cc", ".hpp")),
    Language("ruby", ("tree_sitter_ruby", "language"), (".rb",), line_comment="#", blocks="indentation",
             assignment='{name} = "{value}"'),
)}

EXTENSIONS = {ext: language.name for language in LANGUAGES.values() for ext in language.extensions}
_ALIASES = {alias: language.name for language in LANGUAGES.values() for alias in language.aliases}


@functools.cache
def language(name: str) -> Language:
    """The language by its name or an alias; one not in the table gets its `tree_sitter_<name>`
    grammar, where installed, and the rules of the table's defaults."""
    name = _ALIASES.get(name, name)
    return LANGUAGES.get(name) or Language(name, (f"tree_sitter_{name}", "language"))
