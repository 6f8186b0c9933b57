"""Redaction of finding spans and removal of echoed placeholders."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onbox.classification.decision import Finding
from onbox.classification.labels import Label
from onbox.inference.redaction import placeholder, redact_window, strip_placeholders

R = Label(2, "restricted")


def f(start: int, end: int, kind: str = "aws-access-key") -> Finding:
    return Finding("secret", kind, start, end, R)


def test_spans_become_typed_placeholders() -> None:
    text = "a=SECRET1 b=SECRET2"
    out = redact_window(text, [f(2, 9), f(12, 19, "jwt")])
    assert out.text == "a=<ONBOX_REDACTED:aws-access-key> b=<ONBOX_REDACTED:jwt>"
    assert out.counts() == {"aws-access-key": 1, "jwt": 1}


def test_partly_overlapping_spans_at_window_edges_are_still_replaced() -> None:
    text = "xxSECRETyy"
    assert redact_window(text, [f(2, 8)], 4, 10).text == "<ONBOX_REDACTED:aws-access-key>yy"
    assert redact_window(text, [f(2, 8)], 0, 5).text == "xx<ONBOX_REDACTED:aws-access-key>"
    assert redact_window(text, [f(2, 8)], 8, 10).text == "yy"


def test_overlapping_findings_merge() -> None:
    out = redact_window("..ABCDEFG..", [f(2, 6), f(4, 9, "jwt")])
    assert out.text == "..<ONBOX_REDACTED:aws-access-key>.."
    assert len(out.replaced) == 2


def test_window_outside_text_is_an_error() -> None:
    with pytest.raises(ValueError, match="outside"):
        redact_window("abc", [], 2, 9)


def test_placeholder_types_are_sanitised() -> None:
    assert placeholder("a b>c") == "<ONBOX_REDACTED:a-b-c>"


def test_echoed_placeholders_are_removed_even_when_cut_off() -> None:
    assert strip_placeholders("x = <ONBOX_REDACTED:jwt>\n") == "x = \n"
    assert strip_placeholders("x = <ONBOX_REDACTED:aws-ac") == "x = "
    assert strip_placeholders("x = <ONB") == "x = "
    assert strip_placeholders("if a < b") == "if a < b"
    assert strip_placeholders("a <") == "a <"
    assert strip_placeholders("<div>") == "<div>"


@given(
    st.text(max_size=60),
    st.lists(st.tuples(st.integers(0, 60), st.integers(1, 20)), max_size=5),
    st.integers(0, 60),
    st.integers(0, 60),
)
def test_no_character_of_a_finding_survives(
    text: str, spans: list[tuple[int, int]], a: int, b: int
) -> None:
    lo, hi = sorted((min(a, len(text)), min(b, len(text))))
    findings = [f(s, min(s + n, len(text))) for s, n in spans if s < len(text)]
    out = redact_window(text, findings, lo, hi).text
    kept = [i for i in range(lo, hi) if not any(x.start <= i < x.end for x in findings)]
    # Every character outside the findings survives in order, and nothing else of the text.
    assert out.replace(placeholder("aws-access-key"), "") == "".join(text[i] for i in kept)
