"""Fill-in-the-middle tasks cut from real code, for measuring completion quality.

A task hides one span of a source file and puts the cursor where the span began, the
way the code-completion benchmarks do (HumanEval-infilling, SAFIM, RepoBench). Spans are
chosen with tree-sitter so that every task is a unit a developer would type:

``line-start``  the cursor after the indentation of a one-line statement; the hidden
                span is the rest of that line.
``mid-line``    the cursor at a token inside a one-line statement (not its first); the
                hidden span is the rest of the line.
``block``       the cursor at the first statement of a block of 2 to
                :data:`MAX_BLOCK_LINES` lines (and at most :data:`MAX_BLOCK_BYTES`);
                the hidden span is the block's body.

Sampling is reproducible: the same files, ``seed`` and ``limit`` give the same tasks.
Files are listed with ``git ls-files`` where the path is in a git work tree (so ignored
files are never sampled), otherwise by walking the tree; only files whose tree-sitter
parse is clean give tasks, so that "does it still parse" means something afterwards.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import random
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onbox.classification.languages import LITERAL_NODE_TYPES, language_for_path, parse

logger = logging.getLogger(__name__)

KINDS = ("line-start", "mid-line", "block")
#: Files above this size are skipped (generated code, vendored bundles).
MAX_FILE_BYTES = 256_000
#: A block task's body spans at most this many lines (a 64-token answer can hold it).
MAX_BLOCK_LINES = 8
#: ... and at most this many bytes.
MAX_BLOCK_BYTES = 400
#: A hidden span holds at least this many non-blank characters.
MIN_SPAN_CHARS = 3

#: Grammar name → the LSP language id the pipeline is given (as an editor would send).
LSP_LANGUAGE = {"tsx": "typescriptreact"}

_BLOCKS = frozenset({"block", "compound_statement", "statement_block", "constructor_body"})
#: Nodes whose children are statements.
_CONTAINERS = _BLOCKS | {
    "module",
    "program",
    "source_file",
    "translation_unit",
    "class_body",
    "declaration_list",
}
_SKIPPED_STATEMENTS = frozenset({"comment", "line_comment", "block_comment", "ERROR"})
_SKIPPED_DIRS = frozenset(
    {"node_modules", "__pycache__", "venv", "build", "dist", "target", "vendor", "site-packages"}
)


@dataclass(frozen=True)
class FimTask:
    """One hidden span of one file: ``text[offset:end]`` is what a completion should give."""

    id: str
    path: Path
    root: Path
    language: str  # LSP language id, as the editor would send it
    kind: str  # one of KINDS
    offset: int  # cursor, in characters of ``text``
    end: int  # end of the hidden span, in characters
    text: str = field(repr=False, compare=False)

    @property
    def expected(self) -> str:
        """The hidden span."""
        return self.text[self.offset : self.end]

    @property
    def prefix(self) -> str:
        """Text before the cursor."""
        return self.text[: self.offset]

    @property
    def suffix(self) -> str:
        """Text after the hidden span."""
        return self.text[self.end :]

    @property
    def document(self) -> str:
        """The file as the editor holds it: the hidden span removed, the cursor at ``offset``."""
        return self.prefix + self.suffix

    @property
    def line(self) -> int:
        """1-based line of the cursor."""
        return self.text.count("\n", 0, self.offset) + 1

    @property
    def column(self) -> int:
        """1-based column (characters) of the cursor."""
        return self.offset - (self.text.rfind("\n", 0, self.offset) + 1) + 1

    @property
    def relpath(self) -> str:
        """The file's path relative to the root it was sampled from."""
        try:
            return self.path.relative_to(self.root).as_posix()
        except ValueError:
            return self.path.as_posix()

    def to_json(self) -> dict[str, Any]:
        """What ``onbox eval --json`` records about the task (not the file's text)."""
        return {
            "id": self.id,
            "path": str(self.path),
            "line": self.line,
            "column": self.column,
            "language": self.language,
            "kind": self.kind,
            "expectedChars": len(self.expected),
        }


def source_files(root: Path) -> list[Path]:
    """Files under ``root`` that have a tree-sitter grammar, sorted (``root`` may be a file)."""
    root = root.resolve()
    if root.is_file():
        return [root] if language_for_path(root.name) else []
    names = _git_files(root)
    # Nothing listed: not a work tree, or a folder the enclosing repo ignores (an
    # interpreter under ~/.pyenv): walk it instead.
    paths = [root / n for n in names] if names else list(_walk(root))
    found = []
    for p in paths:
        if language_for_path(p.name) is None:
            continue
        try:
            if p.is_file() and not p.is_symlink() and p.stat().st_size <= MAX_FILE_BYTES:
                found.append(p)
        except OSError:
            continue
    return sorted(found)


def _git_files(root: Path) -> list[str] | None:
    try:
        out = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [n for n in os.fsdecode(out).split("\0") if n]


def _walk(root: Path) -> Iterator[Path]:
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
        for name in files:
            yield Path(here) / name


@dataclass(frozen=True)
class Span:
    """A candidate hidden span, in bytes of the file."""

    kind: str
    start: int
    end: int


def candidate_spans(language: str, data: bytes) -> dict[str, list[Span]]:
    """Every span of every kind in ``data`` (a grammar name from ``languages``); ``{}`` when
    the file does not parse cleanly."""
    tree = parse(language, data)
    if tree.root_node.has_error:
        return {}
    found: dict[str, list[Span]] = {k: [] for k in KINDS}
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(reversed(node.named_children))
        parent = node.parent
        if parent is None or parent.type not in _CONTAINERS or node.type in _SKIPPED_STATEMENTS:
            continue
        if node.type in _BLOCKS:
            continue
        _line_spans(node, data, found)
        for child in node.named_children:
            if child.type in _BLOCKS:
                block = _block_span(child, data)
                if block is not None:
                    found["block"].append(block)
    return found


def _line_spans(node: Any, data: bytes, found: dict[str, list[Span]]) -> None:
    """Line-start and mid-line spans of a one-line statement that starts its line."""
    if node.start_point.row != node.end_point.row:
        return
    line_start = node.start_byte - node.start_point.column
    if data[line_start : node.start_byte].strip():
        return  # something precedes it on the line
    line_end = data.find(b"\n", node.end_byte)
    line_end = len(data) if line_end < 0 else line_end
    if data[node.end_byte : line_end].strip():
        return  # a trailing comment or a second statement: not "the rest of the line"
    end = node.end_byte
    if len(data[node.start_byte : end].replace(b" ", b"")) < MIN_SPAN_CHARS:
        return
    found["line-start"].append(Span("line-start", node.start_byte, end))
    for leaf in _leaves(node):
        if leaf.start_byte <= node.start_byte or leaf.start_byte >= end:
            continue
        parent = leaf.parent
        if parent is not None and parent.type in LITERAL_NODE_TYPES and leaf != parent.children[0]:
            continue  # not inside a string or comment: before it is fine
        hidden = data[leaf.start_byte : end]
        if len(hidden.replace(b" ", b"")) >= MIN_SPAN_CHARS and any(
            c.isalnum() for c in hidden.decode("utf-8", "replace")
        ):
            found["mid-line"].append(Span("mid-line", leaf.start_byte, end))


def _leaves(node: Any) -> Iterator[Any]:
    if not node.children:
        yield node
        return
    for child in node.children:
        yield from _leaves(child)


def _block_span(block: Any, data: bytes) -> Span | None:
    """The body of ``block`` if it starts on its own line and spans 2..MAX_BLOCK_LINES lines."""
    body = [c for c in block.named_children if c.type not in _SKIPPED_STATEMENTS]
    if not body:
        return None
    first, last = body[0], body[-1]
    owner_row = block.parent.start_point.row if block.type == "block" else block.start_point.row
    if first.start_point.row <= owner_row:
        return None  # `if x: y` or `{ y }` on one line
    lines = last.end_point.row - first.start_point.row + 1
    if not 2 <= lines <= MAX_BLOCK_LINES or last.end_byte - first.start_byte > MAX_BLOCK_BYTES:
        return None
    line_start = first.start_byte - first.start_point.column
    if data[line_start : first.start_byte].strip():
        return None
    return Span("block", first.start_byte, last.end_byte)


def task_from_span(path: Path, root: Path, language: str, data: bytes, span: Span) -> FimTask:
    """The task for ``span`` (byte offsets) of the file ``path``."""
    text = data.decode("utf-8")
    start = len(data[: span.start].decode("utf-8"))
    end = start + len(data[span.start : span.end].decode("utf-8"))
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.as_posix()
    digest = hashlib.sha256(f"{rel}:{span.start}:{span.end}:{span.kind}".encode()).hexdigest()
    return FimTask(
        id=digest[:12],
        path=path,
        root=root,
        language=LSP_LANGUAGE.get(language, language),
        kind=span.kind,
        offset=start,
        end=end,
        text=text,
    )


def sample_tasks(
    roots: Sequence[Path],
    *,
    seed: int = 0,
    limit: int = 60,
    kinds: Sequence[str] = KINDS,
) -> list[FimTask]:
    """Up to ``limit`` tasks from the files under ``roots``, spread over files and kinds.

    Files are visited in an order shuffled by ``seed``; each visit takes one span of the
    kind that is furthest behind, so the kinds stay balanced. Files are visited again
    (other spans) until ``limit`` is reached or no candidates are left.
    """
    rng = random.Random(seed)
    files = [(root.resolve(), p) for root in roots for p in source_files(root)]
    rng.shuffle(files)
    pools: list[tuple[Path, Path, str, bytes, dict[str, list[Span]]]] = []
    tasks: list[FimTask] = []
    counts = dict.fromkeys(kinds, 0)
    for root, path in files:
        if len(tasks) >= limit:
            break
        loaded = _load(path)
        if loaded is None:
            continue
        language, data = loaded
        spans = {k: v for k, v in candidate_spans(language, data).items() if k in counts and v}
        if not spans:
            continue
        pools.append((root, path, language, data, spans))
        tasks.extend(_take(rng, root, path, language, data, spans, counts, 1))
    # a second and later passes over the files already parsed (a small repository)
    while len(tasks) < limit and any(p[4] for p in pools):
        for root, path, language, data, spans in pools:
            if len(tasks) >= limit:
                break
            tasks.extend(_take(rng, root, path, language, data, spans, counts, 1))
    return tasks[:limit]


def _load(path: Path) -> tuple[str, bytes] | None:
    language = language_for_path(path.name)
    if language is None:
        return None
    try:
        data = path.read_bytes()
        data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return language, data


def _take(
    rng: random.Random,
    root: Path,
    path: Path,
    language: str,
    data: bytes,
    spans: dict[str, list[Span]],
    counts: dict[str, int],
    n: int,
) -> Iterable[FimTask]:
    """Remove up to ``n`` spans (of the kinds furthest behind) from ``spans`` as tasks."""
    out = []
    for _ in range(n):
        available = [k for k in counts if spans.get(k)]
        if not available:
            break
        kind = min(available, key=lambda k: (counts[k], list(counts).index(k)))
        pool = spans[kind]
        span = pool.pop(rng.randrange(len(pool)))
        counts[kind] += 1
        out.append(task_from_span(path, root, language, data, span))
    return out


def by_kind(tasks: Iterable[FimTask]) -> dict[str, list[FimTask]]:
    """Tasks grouped by kind, in ``KINDS`` order."""
    ordered = sorted(tasks, key=lambda t: KINDS.index(t.kind))
    return {k: list(g) for k, g in itertools.groupby(ordered, key=lambda t: t.kind)}
