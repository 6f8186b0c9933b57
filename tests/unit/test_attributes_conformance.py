"""``.gitattributes`` answers compared with ``git check-attr`` on generated files.

Hypothesis writes random attribute files (macros using macros, macros defined in
``.git/info/attributes`` and used in the tree, nested files, C-quoted patterns with
octal escapes, unset ``-x`` and unspecified ``!x`` states, invalid lines) into a real
repository, and every path's ``onbox-label`` and ``onbox-tags`` must be what git says.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onbox.classification import wildmatch
from onbox.classification.gitattributes import (
    SET,
    UNSET,
    UNSPECIFIED,
    read_attributes,
    read_files,
    states_of,
)

ATTRS = ("onbox-label", "onbox-tags")
MACROS = ("secret", "vaulted", "pub", "binary")
DIRS = ("", "a/", "a/b/", "café/")
PATHS = [
    "x.py",
    "top.txt",
    "café.txt",
    "Café.txt",
    "README.md",
    "a/x.py",
    "a/b/x.py",
    "a/b/c.txt",
    "a/b/deep/c.txt",
    "a/c.py",
    "a/B/c.txt",
    "A/x.py",
    "b/a/x.py",
    "café/x.py",
    "café/naïve.txt",
    "pub/x.py",
    "pub/deep/secret.txt",
    "a/pub/x.py",
    "with space.txt",
    "a/with space.txt",
    "[ab].txt",
    "#notes.md",
    "x*y.txt",
]

_SEGMENTS = ["a", "b", "x.py", "c.txt", "café.txt", "café", "pub", "A", "with space.txt", "deep"]
_WILD = ["*", "?", "**", "*.py", "*.txt", "[ab]", "[!a]*", "[a-c]*", "[[:upper:]]*", "c?.txt"]
_WILD += ["\\*", "[A]*", "x\\*y.txt", "[]ab]*", "[", "na[ï]ve.txt", "*é*", "[A-Z]*", "[B-d]*"]
_COMMON = ["*", "*.txt", "*.py", "**", "a/**", "/*"]
STATES = [
    "onbox-label=public",
    "onbox-label=internal",
    "onbox-label=restricted",
    "onbox-label",
    "-onbox-label",
    "!onbox-label",
    "onbox-tags=pay,ops",
    "onbox-tags=é",
    "-onbox-tags",
    "!onbox-tags",
    "other=1",
    *MACROS,
    *(f"-{m}" for m in MACROS),
    *(f"!{m}" for m in MACROS),
]


def _quote(pattern: str, escape_all: bool) -> str:
    """C-quote ``pattern``: non-ASCII bytes (or every byte) as octal escapes."""
    out = []
    for byte in pattern.encode():
        if escape_all or byte >= 0x80 or byte in b'"\\':
            out.append(f"\\{byte:03o}")
        else:
            out.append(chr(byte))
    return '"' + "".join(out) + '"'


@st.composite
def patterns(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        pattern = draw(st.sampled_from(_COMMON))
    else:
        parts = draw(st.lists(st.sampled_from(_SEGMENTS + _WILD), min_size=1, max_size=3))
        pattern = "/".join(parts)
    if draw(st.booleans()) and draw(st.booleans()):
        pattern = "/" + pattern
    if draw(st.integers(0, 9)) == 0:
        pattern += "/"
    if draw(st.integers(0, 14)) == 0:
        pattern = "!" + pattern
    how = draw(st.integers(0, 5))
    if how == 0 or " " in pattern:
        return _quote(pattern, escape_all=False)
    if how == 1:
        return _quote(pattern, escape_all=True)
    if how == 2 and draw(st.booleans()):
        return '"' + pattern + "\\q" + '"'  # a bad escape: git takes the text literally
    return pattern


@st.composite
def attribute_lines(draw: st.DrawFn, macros_allowed: bool) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        pool = st.sampled_from(STATES) | st.sampled_from(MACROS)
        states = " ".join(draw(st.lists(pool, min_size=1, max_size=3)))
        if macros_allowed and draw(st.integers(0, 2)) == 0:
            lines.append(f"[attr]{draw(st.sampled_from(MACROS))} {states}")
        elif draw(st.integers(0, 30)) == 0:
            lines.append(f"{draw(patterns())} {states} bad/name")  # git drops the line
        else:
            separator = draw(st.sampled_from([" ", "\t", "  "]))
            lines.append(f"{draw(patterns())}{separator}{states}")
    if draw(st.integers(0, 10)) == 0:
        lines.insert(0, "# comment")
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    return ending.join(lines) + ending


@st.composite
def repositories(draw: st.DrawFn) -> dict[str, str]:
    files = {}
    for directory in DIRS:
        files[directory + ".gitattributes"] = draw(attribute_lines(macros_allowed=True))
    files[".git/info/attributes"] = draw(attribute_lines(macros_allowed=True))
    return files


def _git_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "xdg"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_ATTR_NOSYSTEM="1",
    )
    return env


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    home = tmp_path_factory.mktemp("home")
    root = tmp_path_factory.mktemp("repo")
    env = _git_env(home)
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=env)
    yield root, env
    shutil.rmtree(root, ignore_errors=True)


def git_states(root: Path, env: dict[str, str], ignore_case: bool) -> dict[str, dict[str, str]]:
    """``git check-attr`` for every path in :data:`PATHS`, values as bytes text."""
    out = subprocess.run(
        [
            "git",
            "-c",
            f"core.ignorecase={str(ignore_case).lower()}",
            "-C",
            str(root),
            "check-attr",
            "-z",
            "--stdin",
            *ATTRS,
        ],
        input=b"\0".join(p.encode() for p in PATHS) + b"\0",
        capture_output=True,
        check=True,
        env=env,
    ).stdout.decode("latin-1")
    fields = out.split("\0")
    result: dict[str, dict[str, str]] = {}
    for i in range(0, len(fields) - 1, 3):
        path, attr, info = fields[i : i + 3]
        result.setdefault(wildmatch.from_bytes_text(path), {})[attr] = info
    return result


def our_states(root: Path, ignore_case: bool) -> dict[str, dict[str, str]]:
    """This module's answers in ``git check-attr`` terms."""
    info = str(root / ".git" / "info" / "attributes")
    names = {SET: "set", UNSET: "unset", UNSPECIFIED: "unspecified"}
    result = {}
    for path in PATHS:
        files = read_files(root, path, info, ignore_case=ignore_case)
        found = states_of(files, path, ignore_case=ignore_case)
        result[path] = {
            attr: names.get(found[attr].value, found[attr].value)
            if attr in found
            else "unspecified"
            for attr in ATTRS
        }
    return result


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode())


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(files=repositories(), ignore_case=st.booleans())
def test_every_answer_is_gits(
    repo: tuple[Path, dict[str, str]], files: dict[str, str], ignore_case: bool
) -> None:
    root, env = repo
    write(root, files)
    assert our_states(root, ignore_case) == git_states(root, env, ignore_case)


# The cases that gave wrong labels (issue 13), each checked against git as well.
CASES = [
    pytest.param(
        {
            ".gitattributes": "[attr]secret onbox-label=restricted\n[attr]vaulted secret\n"
            "*.txt vaulted\n"
        },
        "top.txt",
        {"onbox-label": "restricted"},
        id="macro-using-a-macro",
    ),
    pytest.param(
        {
            ".git/info/attributes": "[attr]secret onbox-label=restricted\n",
            ".gitattributes": "*.txt secret\n",
        },
        "top.txt",
        {"onbox-label": "restricted"},
        id="macro-from-info-attributes-used-in-the-tree",
    ),
    pytest.param(
        {".gitattributes": '"caf\\303\\251.txt" onbox-label=restricted\n'},
        "café.txt",
        {"onbox-label": "restricted"},
        id="octal-escapes-are-utf8-bytes",
    ),
    pytest.param(
        {
            ".gitattributes": "[attr]secret onbox-label=restricted\n* secret\n",
            "pub/.gitattributes": "** -secret\n",
        },
        "pub/x.py",
        {},
        id="nested-line-that-only-unsets-a-macro",
    ),
    pytest.param(
        {
            ".gitattributes": "[attr]secret onbox-label=restricted\n*.txt secret\n"
            "*.txt onbox-label=public secret\n"
        },
        "top.txt",
        {"onbox-label": "restricted"},
        id="later-state-in-a-line-wins-even-through-a-macro",
    ),
    pytest.param(
        {".gitattributes": "*.txt onbox-label=restricted bad/name\n"},
        "top.txt",
        {},
        id="invalid-attribute-name-drops-the-line",
    ),
    pytest.param(
        {".gitattributes": "caf?.txt onbox-label=internal\n"},
        "café.txt",
        {},
        id="question-mark-is-one-byte",
    ),
]


@pytest.mark.parametrize(("files", "path", "expected"), CASES)
def test_issue_13_cases(
    repo: tuple[Path, dict[str, str]],
    tmp_path: Path,
    files: dict[str, str],
    path: str,
    expected: dict[str, str],
) -> None:
    _, env = repo
    root = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=env)
    write(root, files)
    info = str(root / ".git" / "info" / "attributes")
    found = read_attributes(root, path, info)
    assert {k: ("set" if v.value == SET else v.value) for k, v in found.items()} == expected
    git = git_states(root, env, ignore_case=False)[path]
    assert {k: v for k, v in git.items() if v not in ("unset", "unspecified")} == {
        k: wildmatch.to_bytes_text(v) for k, v in expected.items()
    }


def test_macro_reason_names_the_macro_chain(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    write(
        root,
        {
            ".gitattributes": "[attr]secret onbox-label=restricted\n[attr]vaulted secret\n"
            "*.txt vaulted\n"
        },
    )
    found = read_attributes(root, "top.txt", str(root / ".git" / "info" / "attributes"))
    assert found["onbox-label"].source == ".gitattributes:3"
    assert "vaulted" in found["onbox-label"].via and "secret" in found["onbox-label"].via


def test_symlinked_gitattributes_is_not_read(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "pub").mkdir(parents=True)
    write(
        root,
        {
            ".gitattributes": "[attr]secret onbox-label=restricted\n* secret\n",
            "elsewhere": "* -secret\n",
        },
    )
    (root / "pub" / ".gitattributes").symlink_to(root / "elsewhere")
    found = read_attributes(root, "pub/x.py", str(root / ".git" / "info" / "attributes"))
    assert found["onbox-label"].value == "restricted"
