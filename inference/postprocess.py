"""Turn a model's raw continuation into what the editor should insert.

Steps, in order:

1. Mid-line cursor (text after the cursor on its line): keep only the first line.
2. Stop at the end of the current block or statement group. Languages with a
   tree-sitter grammar (from the per-language wheels) are parsed with the completion in
   place and cut where the block enclosing the cursor ends; every language also gets an
   indentation and bracket check, so an unparsable file still stops sensibly.
   A bracket-language block's closing brace is kept only when the file does not already
   have it next (end of file, unclosed block).
3. Drop text that repeats the suffix (a line the file already has next, or closing
   brackets that follow the cursor and that the completion did not open itself).
4. Trim trailing whitespace.
5. Parse guard (languages with a grammar): the suggestion is cut back to the run of whole
   lines that leaves the fewest syntax errors (the longest such run) and adds none to the
   document; it is dropped when every run adds one. A suggestion that leaves the file broken costs the user more than no
   suggestion. The document around the cursor is parsed once; every candidate is an
   incremental reparse of that tree (one edit at the cursor), so the guard costs a few
   milliseconds on a full 28k-character window.

An empty result means "no suggestion". The result uses CRLF when the document does.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: Node types that delimit a "current block" in the supported grammars.
_BLOCK_TYPES = frozenset(
    {
        "block",  # python, rust, go, java
        "compound_statement",  # c, cpp
        "statement_block",  # javascript, typescript
        "class_body",
        "declaration_list",
        "field_declaration_list",
        "function_body",
        "switch_body",
        "constructor_body",
        "interface_body",
        "enum_body",
    }
)

_GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "javascriptreact": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "typescriptreact": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "java": ("tree_sitter_java", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
}

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}


@functools.cache
def _grammar(language: str) -> Any | None:
    module_name, attr = _GRAMMARS[language]
    try:
        import importlib

        import tree_sitter

        module = importlib.import_module(module_name)
        return tree_sitter.Language(getattr(module, attr)())
    except Exception:  # a missing or incompatible grammar wheel: fall back to indentation
        logger.warning("no usable tree-sitter grammar for %s", language, exc_info=True)
        return None


_parsers = threading.local()  # a tree-sitter Parser is not safe to share between threads


def parser_for(language: str | None) -> Any | None:
    """This thread's tree-sitter parser for an LSP language id (``None``: no grammar)."""
    if not language or language not in _GRAMMARS:
        return None
    cache: dict[str, Any] = _parsers.__dict__.setdefault("by_language", {})
    if language not in cache:
        grammar = _grammar(language)
        if grammar is None:
            return None
        import tree_sitter

        cache[language] = tree_sitter.Parser(grammar)
    return cache[language]


def _indent(line: str) -> int:
    return len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())


def _cut_by_indentation(prefix: str, completion: str) -> str:
    """Stop before the first line that dedents out of the cursor's block."""
    cursor_line = prefix.rsplit("\n", 1)[-1]
    if cursor_line.strip():
        block_indent = _indent(cursor_line)
        if cursor_line.rstrip().endswith((":", "{", "(", "[")):
            block_indent += 1
    else:
        block_indent = -1  # decided by the first non-empty completion line
    lines = completion.split("\n")
    kept = [lines[0]]
    if block_indent < 0 and lines[0].strip():
        # the first line continues the cursor's (blank) line: its indent counts from column 0
        block_indent = _indent(cursor_line + lines[0])
    for line in lines[1:]:
        if line.strip():
            if block_indent < 0:
                block_indent = _indent(line)
            elif _indent(line) < block_indent:
                # A closing bracket at the block's own level ends it, and belongs to it.
                if (
                    line.strip() in ("}", ")", "]", "};", "});", "),")
                    and _indent(line) >= block_indent - 4
                ):
                    kept.append(line)
                break
        kept.append(line)
    return "\n".join(kept)


def _cut_by_brackets(completion: str, suffix: str) -> str:
    """Stop where the completion closes a bracket it did not open (the enclosing block).

    The closing bracket is dropped when the file already has it next (the usual case of a
    cursor inside a block); otherwise (end of file, unclosed block) the line that closes
    the block is kept.
    """
    depth = 0
    in_string: str | None = None
    for i, ch in enumerate(completion):
        if in_string:
            if ch == in_string:
                in_string = None
            elif ch == "\n":
                in_string = None
            continue
        if ch in "\"'`":
            in_string = ch
        elif ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            depth -= 1
            if depth < 0:
                if suffix.lstrip().startswith(ch):
                    return completion[:i]
                return completion[: i + 1] + completion[i + 1 :].split("\n", 1)[0]
    return completion


def _unmatched_closers(text: str) -> int:
    """How many closing brackets in ``text`` close something opened before it."""
    depth = unmatched = 0
    for ch in text:
        if ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            if depth:
                depth -= 1
            else:
                unmatched += 1
    return unmatched


def _cut_by_syntax(prefix: str, completion: str, suffix: str, language: str | None) -> str:
    """Cut where the tree-sitter block enclosing the cursor ends inside the completion."""
    parser = parser_for(language)
    if parser is None or not completion:
        return completion
    source = (prefix + completion + suffix).encode("utf-8", "surrogatepass")
    start = len(prefix.encode("utf-8", "surrogatepass"))
    end = start + len(completion.encode("utf-8", "surrogatepass"))
    tree = parser.parse(source)
    node = tree.root_node.descendant_for_byte_range(start, start)
    block = None
    while node is not None:
        if node.type in _BLOCK_TYPES and node.start_byte < start:
            block = node
            break
        node = node.parent
    if block is None or block.has_error:
        return completion
    if start < block.end_byte < end:
        cut = block.end_byte - start
        text = completion.encode("utf-8", "surrogatepass")[:cut].decode("utf-8", "surrogatepass")
        # keep whole lines: finish the line the block ends on
        rest = completion[len(text) :]
        tail = rest.split("\n", 1)[0]
        return text + (tail if not tail.strip() else "")
    return completion


def _drop_suffix_repeats(completion: str, prefix: str, suffix: str) -> str:
    """Remove what the file already has after the cursor."""
    next_lines = [ln.strip() for ln in suffix.split("\n") if ln.strip()]
    if next_lines:
        first = next_lines[0]
        lines = completion.split("\n")
        # On a blank cursor line the first completion line is a whole line too.
        start = 0 if not prefix.rsplit("\n", 1)[-1].strip() else 1
        for i in range(start, len(lines)):
            if lines[i].strip() == first and len(first) > 1:
                completion = "\n".join(lines[:i])
                break
    head = suffix.split("\n", 1)[0].strip()
    if head:
        # The cursor sits before closing text such as ")" or "]):"; drop it from the end,
        # but never a bracket that closes one the completion opened itself.
        stripped = completion.rstrip()
        unmatched = _unmatched_closers(stripped)
        for k in range(min(len(head), len(stripped)), 0, -1):
            tail = head[:k]
            closers = sum(tail.count(c) for c in _CLOSERS)
            if stripped.endswith(tail) and tail.strip() and closers <= unmatched:
                completion = stripped[: len(stripped) - k]
                break
    return completion


@functools.cache
def _empty_block_query(language: str) -> Any | None:
    """Python's blocks: its grammar accepts an empty one (``for x in y:`` then a dedent)."""
    grammar = _grammar(language) if language == "python" else None
    if grammar is None:
        return None
    import tree_sitter

    return tree_sitter.Query(grammar, "(block) @block")


def _syntax_errors(root: Any, language: str | None = None) -> int:
    """Error and missing nodes in a tree (only subtrees that hold one are walked), plus
    blocks with no statement where the language needs one."""
    found = 0
    query = _empty_block_query(language) if language else None
    if query is not None:
        import tree_sitter

        blocks = tree_sitter.QueryCursor(query).captures(root).get("block", [])
        found += sum(1 for b in blocks if b.named_child_count == 0)
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            found += 1
        if node.has_error:
            stack.extend(node.children)
    return found


def _point(text: bytes) -> tuple[int, int]:
    """Tree-sitter's (row, byte column) of the end of ``text``."""
    return text.count(b"\n"), len(text) - (text.rfind(b"\n") + 1)


def parse_guard(prefix: str, completion: str, suffix: str, language: str | None) -> str:
    """The whole-line head of ``completion`` that leaves the fewest syntax errors, and the
    longest of those; "" when every head adds an error.

    Errors are counted against the document without the suggestion, which may well be
    broken already (a window cut mid-construct, code being typed): a head may not add one.
    Among the heads that do not, the fewest errors wins, so a suggestion that fills the
    block being written is not kept together with a last line cut off mid-expression.
    (Where an error starts says little: tree-sitter's recovery often opens the error node
    lines above the cause, so only counts are compared.)
    """
    parser = parser_for(language)
    if parser is None or not completion.strip():
        return completion
    head = prefix.encode("utf-8", "surrogatepass")
    tail = suffix.encode("utf-8", "surrogatepass")
    base = parser.parse(head + tail)
    allowed = _syntax_errors(base.root_node, language)
    start = _point(head)
    lines = completion.split("\n")
    best, best_errors = "", allowed + 1
    for keep in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:keep]).rstrip()
        if not candidate.strip():
            continue
        middle = candidate.encode("utf-8", "surrogatepass")
        rows, column = _point(middle)
        tree = base.copy()
        tree.edit(
            start_byte=len(head),
            old_end_byte=len(head),
            new_end_byte=len(head) + len(middle),
            start_point=start,
            old_end_point=start,
            new_end_point=(start[0] + rows, column if rows else start[1] + column),
        )
        errors = _syntax_errors(parser.parse(head + middle + tail, tree).root_node, language)
        if errors < best_errors:  # ties keep the longer head, met first
            best, best_errors = candidate, errors
            if errors == 0:
                break
    return best


def block_finished(prefix: str, suffix: str, text: str) -> bool:
    """Whether a streaming continuation has already left the cursor's block.

    Checked by the on-box generation loop whenever a newline arrives, so generation stops
    as soon as post-processing would cut the rest anyway.
    """
    if "\n" not in text:
        return False
    if suffix.replace("\r\n", "\n").split("\n", 1)[0].strip():
        return True  # mid-line cursor: one line is all we keep
    prefix_n = prefix.replace("\r\n", "\n")
    text_n = text.replace("\r\n", "\n")
    head, tail = text_n.rsplit("\n", 1)
    if tail.strip() and tail.strip()[0] not in _CLOSERS:
        return len(_cut_by_indentation(prefix_n, text_n)) < len(text_n)
    # The last line is blank or may yet turn out to close the block (and be kept with
    # the rest of its line): judge the complete lines only.
    complete_lines = head + "\n"
    return len(_cut_by_indentation(prefix_n, complete_lines)) < len(complete_lines) - 1


def postprocess(
    completion: str,
    prefix: str,
    suffix: str,
    language: str | None = None,
    *,
    stops: tuple[Callable[[str, str, str], str], ...] = (),
) -> str:
    """Clean a raw continuation; returns ``""`` when nothing useful is left."""
    text = completion.replace("\r\n", "\n")
    suffix_n = suffix.replace("\r\n", "\n")
    prefix_n = prefix.replace("\r\n", "\n")
    rest_of_line = suffix_n.split("\n", 1)[0]
    if rest_of_line.strip():
        text = text.split("\n", 1)[0]
    else:
        text = _cut_by_syntax(prefix_n, text, suffix_n, language)
        text = _cut_by_indentation(prefix_n, text)
        if parser_for(language) is not None and language != "python":
            text = _cut_by_brackets(text, suffix_n)
    for stop in stops:
        text = stop(prefix_n, text, suffix_n)
    text = _drop_suffix_repeats(text, prefix_n, suffix_n)
    text = "\n".join(line.rstrip() for line in text.split("\n")).rstrip()
    text = parse_guard(prefix_n, text, suffix_n, language)
    if not text.strip():
        return ""
    if "\r\n" in prefix or "\r\n" in suffix:
        text = text.replace("\n", "\r\n")  # insert with the document's line endings
    return text
