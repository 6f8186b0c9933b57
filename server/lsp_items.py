"""A completion result as LSP items: pure translators that need no server.

The handlers in :mod:`onbox.server.lsp` run the completion and hand the result, the
document's text and the cursor here (the way jedi-language-server's
``lsp_completion_item`` works); every item carries the ``onbox.accept`` command so that
accepting it is journalled.
"""

from __future__ import annotations

from lsprotocol import types

from onbox.server.pipeline import CompletionResult
from onbox.server.positions import offset_to_position

#: The command an accepted suggestion runs (journals the acceptance).
ACCEPT = "onbox.accept"
#: The longest label a menu item shows.
MAX_LABEL = 60


def accept_command(result: CompletionResult, uri: str) -> types.Command:
    """``onbox.accept`` for this suggestion, accepted whole."""
    return types.Command(
        title="Onbox: accept",
        command=ACCEPT,
        arguments=[{"completionId": result.id, "uri": uri, "how": "whole"}],
    )


def inline_items(
    result: CompletionResult | None, uri: str, position: types.Position
) -> types.InlineCompletionList:
    """Ghost text at ``position`` (no item when there is no suggestion)."""
    if result is None or not result.text:
        return types.InlineCompletionList(items=[])
    item = types.InlineCompletionItem(
        insert_text=result.text,
        range=types.Range(start=position, end=position),
        command=accept_command(result, uri),
    )
    return types.InlineCompletionList(items=[item])


def word_start(text: str, offset: int) -> int:
    """Where the identifier being typed at ``offset`` starts."""
    start = offset
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        start -= 1
    return start


def menu_items(
    result: CompletionResult | None,
    uri: str,
    text: str,
    offset: int,
    position: types.Position,
    encoding: str = "utf-16",
) -> types.CompletionList:
    """One menu item whose edit replaces the word being typed with word + suggestion.

    Replacing the word (rather than inserting at the cursor) lets the client's filter
    match the item against what was typed.
    """
    if result is None or not result.text:
        return types.CompletionList(is_incomplete=True, items=[])
    start = word_start(text, offset)
    word = text[start:offset]
    line, char = offset_to_position(text, start, encoding)
    first_line = result.text.split("\n", 1)[0].strip() or result.text.strip()
    item = types.CompletionItem(
        label=(word + first_line)[:MAX_LABEL] or "Onbox suggestion",
        kind=types.CompletionItemKind.Snippet,
        detail=f"Onbox · {result.label} · {result.destination}",
        documentation=types.MarkupContent(
            kind=types.MarkupKind.PlainText, value=word + result.text
        ),
        filter_text=word + result.text,
        sort_text="0",
        preselect=True,
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(
            range=types.Range(start=types.Position(line=line, character=char), end=position),
            new_text=word + result.text,
        ),
        command=accept_command(result, uri),
    )
    return types.CompletionList(is_incomplete=True, items=[item])
