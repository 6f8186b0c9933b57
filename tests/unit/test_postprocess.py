"""Post-processing of raw continuations: golden fixtures, and ``block_finished`` agreement.

Each file in ``fixtures/postprocess/`` is one case: ``language`` (omitted: no language
id), ``prefix`` and ``suffix`` (the document around the cursor), ``completion`` (what a
model produced) and ``expected`` (what the editor must insert; empty means no
suggestion). ``crlf = true`` turns every ``\\n`` of the case into ``\\r\\n``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from onbox.inference.postprocess import block_finished, parser_for, postprocess

FIXTURES = Path(__file__).parent / "fixtures" / "postprocess"
GRAMMAR_LANGUAGES = ["python", "javascript", "typescript", "go", "java", "rust", "c", "cpp"]


@dataclass(frozen=True)
class Case:
    """One golden post-processing case."""

    name: str
    description: str
    language: str | None
    prefix: str
    suffix: str
    completion: str
    expected: str


def _load(path: Path) -> Case:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    fields = [data["prefix"], data["suffix"], data["completion"], data["expected"]]
    if data.get("crlf", False):
        fields = [f.replace("\n", "\r\n") for f in fields]
    return Case(path.stem, data["description"], data.get("language"), *fields)


CASES = [_load(p) for p in sorted(FIXTURES.glob("*.toml"))]


def test_enough_golden_cases() -> None:
    assert len(CASES) >= 25
    languages = {c.language for c in CASES}
    assert set(GRAMMAR_LANGUAGES) <= languages
    assert None in languages


@pytest.mark.parametrize("language", [*GRAMMAR_LANGUAGES, "typescriptreact"])
def test_grammar_wheels_are_usable(language: str) -> None:
    """The fixtures exercise tree-sitter only if every grammar actually loads."""
    assert parser_for(language) is not None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Case) -> None:
    got = postprocess(case.completion, case.prefix, case.suffix, case.language)
    assert got == case.expected, case.description


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_postprocess_is_idempotent(case: Case) -> None:
    once = postprocess(case.completion, case.prefix, case.suffix, case.language)
    assert postprocess(once, case.prefix, case.suffix, case.language) == once


def test_custom_stop_runs_before_suffix_trimming() -> None:
    def stop_at_todo(prefix: str, text: str, suffix: str) -> str:
        return text.split("# TODO", 1)[0]

    got = postprocess(
        "x = 1\n    # TODO later\n    y = 2",
        "def f():\n    ",
        "\n",
        "python",
        stops=(stop_at_todo,),
    )
    assert got == "x = 1"


def test_lone_surrogates_and_nul_do_not_break_parsing() -> None:
    text = "s = '\ud800'\n    t = 1\n\nprint(s)"
    assert postprocess(text, "def f():\n    ", "\n", "python") == "s = '\ud800'\n    t = 1"
    # A NUL byte is not valid Python source (CPython refuses it): the parse guard drops
    # the line that holds it, and nothing raises.
    text = "s = '\ud800'\n    t = '\x00'\n\nprint(s)"
    assert postprocess(text, "def f():\n    ", "\n", "python") == "s = '\ud800'"


# -- block_finished agrees with postprocess ------------------------------------------------

_INDENTED_PREFIXES = [
    "def f(x):\n    ",
    "def f(x):\n    y = x\n    ",
    "class A:\n    def m(self):\n        ",
    "if ok:\n    ",
    "def f(x):\n",
    "def f(x):",
    "for i in range(3):\n    if i:\n        ",
    "x = 1\n",
    "",
]
_SUFFIXES = ["", "\n", "\n\nprint(f(1))\n", "\n    return y\n"]

_line = st.builds(
    lambda indent, body: " " * indent + body,
    st.sampled_from([0, 1, 2, 4, 6, 8, 12]),
    st.sampled_from(["", "x = 1", "return x", "pass", "def g():", "if x:", "print(x)", ")"]),
)
_text = st.lists(_line, min_size=1, max_size=6).map("\n".join)
_more = st.text(alphabet=st.sampled_from(list("ab :()\n    \t#")), max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    prefix=st.sampled_from(_INDENTED_PREFIXES),
    suffix=st.sampled_from(_SUFFIXES),
    text=_text,
    more=_more,
)
@example(prefix="def f(x):\n    ", suffix="\n", text="return x\n\ndef g", more="():\n    pass")
@example(prefix="def f(x):\n", suffix="", text="    return x\nprint", more="(1)")
@example(prefix="def f(x):\n    ", suffix="", text="return x\n", more="\n\n    y = 2")
@example(prefix="def f(x):\r\n    ", suffix="\r\n", text="y = x\r\n    y", more=" += 1")
def test_block_finished_means_the_rest_is_cut(
    prefix: str, suffix: str, text: str, more: str
) -> None:
    """Once the generation loop may stop, nothing generated later survives post-processing."""
    assume(block_finished(prefix, suffix, text))
    for language in (None, "python"):
        assert postprocess(text + more, prefix, suffix, language) == postprocess(
            text, prefix, suffix, language
        )


_BRACE_PREFIXES = [
    "function f(x) {\n  ",
    "function f(x) {\n",
    "class A {\n  m() {\n    ",
    "if (x) {",
]
_BRACE_SUFFIXES = ["", "\n}\n", "\n  }\n}\n", "\n\nfoo();\n"]
# Lines that keep the text well-formed enough for tree-sitter: after a stray ``})`` its
# error recovery (and so the syntax cut) depends on text generated later.
_brace_line = st.builds(
    lambda indent, body: " " * indent + body,
    st.sampled_from([0, 2, 4, 6]),
    st.sampled_from(["", "x = 1;", "return x;", "}", "};", "if (x) {", "} else {", "g() {"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    prefix=st.sampled_from(_BRACE_PREFIXES),
    suffix=st.sampled_from(_BRACE_SUFFIXES),
    text=st.lists(_brace_line, min_size=1, max_size=6).map("\n".join),
    more=st.text(alphabet=st.sampled_from(list("ab ;(){}\n  ")), max_size=40),
    language=st.sampled_from(["javascript", "go", "c", "rust"]),
)
@example(
    prefix="function f(x) {\n  ", suffix="", text="x = 1;\n}", more=");", language="javascript"
)
def test_block_finished_agrees_for_brace_languages(
    prefix: str, suffix: str, text: str, more: str, language: str
) -> None:
    assume(block_finished(prefix, suffix, text))
    assert postprocess(text + more, prefix, suffix, language) == postprocess(
        text, prefix, suffix, language
    )


@pytest.mark.parametrize(
    ("prefix", "suffix", "text"),
    [
        ("def f(x):\n    ", "\n", "return x\n\ndef g():\n"),
        ("def f(x):\n", "", "    return x\nprint(x)\n"),
        ("print(", ")\n", "x)\n"),
    ],
)
def test_block_finished_detects_a_finished_block(prefix: str, suffix: str, text: str) -> None:
    assert block_finished(prefix, suffix, text)


@pytest.mark.parametrize(
    ("prefix", "suffix", "text"),
    [
        ("def f(x):\n    ", "\n", "return x"),  # no newline yet
        ("def f(x):\n    ", "\n", "y = x\n    return y\n"),
        ("def f(x):\n    ", "\n", "if x:\n        y = 1\n    "),
        ("def f(x):\n", "", "    y = 1\n\n"),
        ("def f(x):\r\n    ", "\r\n", "y = x\r\n    ret"),  # CRLF counts as one newline
        ("function f() {\n  ", "", "x = 1;\n})"),  # the closing line may go on: `});`
    ],
)
def test_block_finished_waits_while_the_block_goes_on(prefix: str, suffix: str, text: str) -> None:
    assert not block_finished(prefix, suffix, text)


_PIECES = [
    "x = 1",
    "if x:",
    "    y = (x",
    "        return y",
    "for i in range(3):",
    "    total += i",
    "}",
    "    pass",
    "call(a, b)",
    "]",
    "else:",
    "    z = [1, 2",
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(_PIECES), min_size=1, max_size=6),
    st.sampled_from(["def f(x):\n    ", "class C:\n    def m(self):\n        ", "x = 0\n"]),
    st.sampled_from(["\n", "\n\n    return x\n", "\n\nprint(1)\n", "\ndef g(:\n"]),
)
def test_parse_guard_never_adds_a_syntax_error(lines: list[str], prefix: str, suffix: str) -> None:
    """Whatever the model produced, what is inserted adds no syntax error to the document,
    checked with a fresh parse (the guard itself reparses incrementally)."""
    from onbox.inference.postprocess import _syntax_errors

    got = postprocess("\n".join(lines), prefix, suffix, "python")
    if got:
        parser = parser_for("python")
        before = _syntax_errors(parser.parse((prefix + suffix).encode()).root_node, "python")
        after = _syntax_errors(parser.parse((prefix + got + suffix).encode()).root_node, "python")
        assert after <= before


def test_parse_guard_is_thread_safe() -> None:
    """Post-processing runs on the model thread and on eval workers at once: each thread
    gets its own tree-sitter parser, so concurrent answers equal sequential ones."""
    from concurrent.futures import ThreadPoolExecutor

    cases = [c for c in CASES if c.language] * 8
    expected = [postprocess(c.completion, c.prefix, c.suffix, c.language) for c in cases]
    with ThreadPoolExecutor(4) as pool:
        got = list(
            pool.map(lambda c: postprocess(c.completion, c.prefix, c.suffix, c.language), cases)
        )
    assert got == expected
