"""Languages the content scanner understands, and their tree-sitter grammars.

Grammars are loaded lazily (importing one costs a few milliseconds) and cached. A file
whose language has no grammar is still scanned by the regex detectors; only the
"is this inside a string literal or comment" check and tree-sitter detectors need one.
"""

from __future__ import annotations

import importlib
import logging
import re
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

#: interpreter named by a shebang (version suffix dropped) → grammar
_INTERPRETERS = {
    "python": "python",
    "pypy": "python",
    "node": "javascript",
    "nodejs": "javascript",
    "bun": "javascript",
    "deno": "typescript",
    "ts-node": "typescript",
    "tsx": "typescript",
}
_SHEBANG_LIMIT = 256  # a shebang line longer than this is not one the kernel would run
_VERSION_SUFFIX = re.compile(r"[\d.]+$")

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


def language_for(path: str | None, language_id: str | None, text: str) -> str | None:
    """The grammar for a document: the editor's ``languageId`` first, then the file
    extension, then a shebang line (``#!/usr/bin/env python3``); ``None`` if none names one.
    """
    return (
        normalise_language(language_id)
        or (language_for_path(path) if path else None)
        or language_from_shebang(text)
    )


def language_from_shebang(text: str) -> str | None:
    """The grammar a ``#!`` first line runs the file with (``#!/bin/bash``: ``None``)."""
    if not text.startswith("#!"):
        return None
    line = text[2:_SHEBANG_LIMIT].split("\n", 1)[0]
    words = line.split()
    if not words:
        return None
    program = PurePosixPath(words[0]).name
    if program == "env":  # #!/usr/bin/env [-S] [VAR=value...] interpreter
        rest = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        if not rest:
            return None
        program = PurePosixPath(rest[0]).name
    return _INTERPRETERS.get(_VERSION_SUFFIX.sub("", program.lower()))


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
