"""LSP positions ↔ string offsets: UTF-16 by default, and every odd position clamped."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onbox.server.positions import offset_to_position, position_to_offset

#: "😀" is one code point but two UTF-16 code units (a surrogate pair) and four UTF-8 bytes.
TEXT = "a😀b\r\nx\ny = 'é'\n"


@pytest.mark.parametrize(
    ("line", "character", "offset"),
    [
        (0, 0, 0),
        (0, 1, 1),  # before the emoji
        (0, 2, 1),  # inside the surrogate pair: rounds down to the emoji's start
        (0, 3, 2),  # after the emoji
        (0, 4, 3),  # before "\r\n"
        (0, 99, 3),  # past the end of the line: its end, never the next line
        (1, 0, 5),  # "\r\n" is one line break
        (1, 1, 6),
        (2, 6, 13),  # "y = 'é" is 6 code units
        (3, 0, len(TEXT)),  # the empty last line
        (40, 2, len(TEXT)),  # past the end of the text
        (-1, 5, 0),
        (1, -3, 5),
    ],
)
def test_utf16_positions_to_offsets(line: int, character: int, offset: int) -> None:
    assert position_to_offset(TEXT, line, character) == offset


def test_other_encodings() -> None:
    assert position_to_offset(TEXT, 0, 5, "utf-8") == 2  # 1 byte + 4 bytes
    assert position_to_offset(TEXT, 0, 3, "utf-8") == 1  # inside the emoji's bytes
    assert position_to_offset(TEXT, 0, 2, "utf-32") == 2
    assert offset_to_position(TEXT, 2, "utf-8") == (0, 5)
    assert offset_to_position(TEXT, 2, "utf-32") == (0, 2)
    assert offset_to_position(TEXT, 13, "utf-8") == (2, 7)  # "é" is two bytes


def test_offsets_to_utf16_positions() -> None:
    assert offset_to_position(TEXT, 2) == (0, 3)
    assert offset_to_position(TEXT, 5) == (1, 0)
    assert offset_to_position(TEXT, 3) == (0, 4)
    assert offset_to_position(TEXT, -7) == (0, 0)
    assert offset_to_position(TEXT, 10**6) == (3, 0)


lines = st.lists(
    st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=8), max_size=5
)


@given(lines, st.sampled_from(["\n", "\r\n", "\r"]), st.sampled_from(["utf-16", "utf-8", "utf-32"]))
def test_every_character_boundary_round_trips(
    parts: list[str], newline: str, encoding: str
) -> None:
    text = newline.join(parts)
    for offset in range(len(text) + 1):
        if text[offset - 1 : offset + 1] == "\r\n":
            continue  # not a character boundary an editor can name
        line, character = offset_to_position(text, offset, encoding)
        assert position_to_offset(text, line, character, encoding) == offset
