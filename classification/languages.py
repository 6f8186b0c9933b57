"""Languages the content scanner understands, and their tree-sitter grammars.

Grammars are loaded lazily (importing one costs a few milliseconds) and cached. A file
whose language has no grammar is still scanned by the regex detectors; only the
"is this inside a string literal or comment" check and tree-sitter detectors need one.
"""

from __future__ import annotations

import importlib
import logging
from functools import cache
from pathlib import PurePosixPath
from typing import Any

from tree_sitter import Language, Parser, Query, QueryError

logger = logging.getLogger(__name__)

#: language name → (module, attribute of the language function)
_GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "java": ("tree_sitter_java", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
}

_EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".java": "java",
    ".rs": "rust",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
}

#: LSP languageId aliases
_ALIASES = {"typescriptreact": "tsx", "javascriptreact": "javascript", "c++": "cpp"}

#: node types that hold string literals or comments, per grammar
LITERAL_NODE_TYPES = frozenset(
    {
        "string",
        "string_literal",
        "raw_string_literal",
        "interpreted_string_literal",
        "template_string",
        "string_content",
        "char_literal",
        "comment",
        "line_comment",
        "block_comment",
        "string_fragment",
        "text_block",
        "concatenated_string",
    }
)


def language_for_path(path: str) -> str | None:
    """The language name for a file name, or ``None`` when no grammar covers it."""
    return _EXTENSIONS.get(PurePosixPath(path).suffix.lower())


def normalise_language(language: str | None) -> str | None:
    """Map an LSP ``languageId`` or user-written name to a grammar name (or ``None``)."""
    if language is None:
        return None
    name = _ALIASES.get(language.lower(), language.lower())
    return name if name in _GRAMMARS else None


def known_languages() -> tuple[str, ...]:
    """Names accepted in a detector's ``language``."""
    return tuple(_GRAMMARS)


@cache
def grammar(language: str) -> Language:
    """The tree-sitter :class:`Language` for ``language`` (a name from :func:`known_languages`)."""
    module_name, attribute = _GRAMMARS[language]
    module = importlib.import_module(module_name)
    return Language(getattr(module, attribute)())


def compile_query(language: str, source: str) -> Query:
    """Compile a tree-sitter query; raise :class:`ValueError` naming the problem."""
    name = normalise_language(language)
    if name is None:
        raise ValueError(
            f"unknown language {language!r}; tree-sitter detectors support "
            f"{', '.join(known_languages())}"
        )
    try:
        return Query(grammar(name), source)
    except QueryError as exc:
        raise ValueError(f"invalid tree-sitter query for {name}: {exc}") from None


def parse(language: str, data: bytes) -> Any:
    """Parse ``data`` and return the tree."""
    return Parser(grammar(language)).parse(data)  # a fresh parser: safe across threads
