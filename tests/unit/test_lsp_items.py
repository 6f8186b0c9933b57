"""The pure translators behind the handlers: status payloads and LSP items, no server."""

from __future__ import annotations

from lsprotocol import types

from onbox.classification.decision import Decision, Reason
from onbox.classification.labels import LabelScale
from onbox.server.lsp_items import ACCEPT, MAX_LABEL, inline_items, menu_items, word_start
from onbox.server.pipeline import CompletionResult
from onbox.server.status import label_change, reason_texts, status_payload

SCALE = LabelScale()
RESTRICTED = SCALE.highest


def result(text: str = "rn a + b") -> CompletionResult:
    return CompletionResult(
        id="c1",
        text=text,
        label="restricted",
        destination="on-box",
        destination_kind="llama-cpp",
        model="m.gguf",
        outcome="served",
    )


def decision() -> Decision:
    return Decision(
        RESTRICTED,
        (
            Reason("codeowners", RESTRICTED, "@acme/payments owns billing/", "CODEOWNERS:3"),
            Reason("default", SCALE.lowest, "the policy's default"),
        ),
        "p1",
        4,
    )


def test_document_status_carries_label_route_and_reasons() -> None:
    payload = status_payload(
        "file:///b.py",
        state="ready",
        message="",
        model="m.gguf",
        policy={"id": "p1"},
        journal={"ok": True, "error": None},
        decision=decision(),
        destination="on-box",
        destination_kind="llama-cpp",
    )
    assert payload == {
        "uri": "file:///b.py",
        "state": "ready",
        "message": "",
        "model": "m.gguf",
        "policy": {"id": "p1"},
        "journal": {"ok": True, "error": None},
        "label": "restricted",
        "destination": "on-box",
        "destinationKind": "llama-cpp",
        "reasons": [
            "codeowners: @acme/payments owns billing/ (CODEOWNERS:3)",
            "default: the policy's default",
        ],
    }


def test_server_status_has_no_document_fields() -> None:
    payload = status_payload(None, state="loading", message="", model="m.gguf")
    assert payload == {"uri": None, "state": "loading", "message": "", "model": "m.gguf"}


def test_label_change_only_when_a_shown_label_changes() -> None:
    shown = {"uri": "file:///b.py", "label": "internal"}
    assert label_change({}, shown) is None  # first status: nothing was shown before
    assert label_change(shown, dict(shown)) is None
    assert label_change(shown, {**shown, "label": "restricted"}) == {
        "uri": "file:///b.py",
        "from": "internal",
        "to": "restricted",
    }
    assert reason_texts(decision())[0].endswith("(CODEOWNERS:3)")


def test_inline_item_inserts_at_the_cursor_and_journals_acceptance() -> None:
    at = types.Position(line=1, character=4)
    items = inline_items(result(), "file:///a.py", at).items
    assert len(items) == 1 and items[0].insert_text == "rn a + b"
    assert items[0].range == types.Range(start=at, end=at)
    command = items[0].command
    assert command is not None and command.command == ACCEPT
    assert command.arguments == [{"completionId": "c1", "uri": "file:///a.py", "how": "whole"}]
    assert inline_items(None, "file:///a.py", at).items == []
    assert inline_items(result(""), "file:///a.py", at).items == []


def test_menu_item_replaces_the_word_being_typed() -> None:
    text = "def add(a, b):\n    retu"
    at = types.Position(line=1, character=8)
    menu = menu_items(result(), "file:///a.py", text, len(text), at)
    (item,) = menu.items
    assert menu.is_incomplete
    assert item.text_edit is not None
    assert item.text_edit.new_text == "return a + b"
    assert isinstance(item.text_edit, types.TextEdit)
    assert item.text_edit.range.start == types.Position(line=1, character=4)
    assert item.filter_text == "return a + b" and item.label == "return a + b"
    assert item.detail == "Onbox · restricted · on-box"
    assert menu_items(None, "file:///a.py", text, len(text), at).items == []


def test_menu_positions_count_utf16_units_and_labels_are_bounded() -> None:
    text = "s = '😀'; na"
    at = types.Position(line=0, character=12)  # the emoji counts two UTF-16 units
    (item,) = menu_items(result("me" + "x" * 100), "file:///a.py", text, len(text), at).items
    assert item.text_edit is not None and isinstance(item.text_edit, types.TextEdit)
    assert item.text_edit.range.start == types.Position(line=0, character=10)
    assert len(item.label) == MAX_LABEL
    assert word_start("a.b_c1", 6) == 2 and word_start("", 0) == 0
