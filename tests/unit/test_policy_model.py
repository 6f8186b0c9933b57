"""Policy parsing and validation: every error names file, line and key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from onbox.classification.patterns import PatternError, _static_check, compile_safe_regex
from onbox.classification.policy import (
    ON_BOX,
    Policy,
    PolicyError,
    builtin_policy,
    load_or_keep,
    load_policy,
    parse_policy,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy.md"


def example_policy() -> str:
    """The complete example from docs/policy.md (it must stay valid)."""
    text = DOC.read_text(encoding="utf-8")
    blocks: list[str] = re.findall(r"```toml\n(.*?)```", text, re.S)
    return blocks[-1]


MINIMAL = """\
[policy]
id = "t"
labels = ["public", "internal", "restricted"]
default_label = "restricted"

[destinations.cloud]
kind = "anthropic"
base_url = "https://api.anthropic.com"
clearance = "public"
api_key_env = "K"

[routes]
public = ["cloud"]
"""


def error_for(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(text.encode(), "p.toml")
    return info.value


def test_docs_example_parses_completely() -> None:
    policy = parse_policy(example_policy().encode(), "policy.toml")
    assert policy.scale.names == ("public", "internal", "restricted")
    assert policy.routes["public"][-1] == ON_BOX
    assert policy.destinations[ON_BOX].clearance == policy.scale.highest
    assert policy.detectors and all(d.compiled is not None for d in policy.detectors)
    assert policy.serial == 0 and len(policy.sha256) == 64


def test_minimal_policy_defaults() -> None:
    policy = parse_policy(MINIMAL.encode(), "p.toml")
    assert policy.routes == {
        "public": ("cloud", ON_BOX),
        "internal": (ON_BOX,),
        "restricted": (ON_BOX,),
    }
    assert policy.destinations["cloud"].timeout == 10.0
    assert policy.default_label.name == "restricted"
    assert policy.source == "p.toml"
    replaced = dataclasses.replace(policy, serial=7)
    assert replaced.serial == 7 and isinstance(replaced, Policy)


def test_builtin_policy_is_fail_closed() -> None:
    policy = builtin_policy()
    assert policy.id == "builtin-fail-closed"
    assert policy.default_label == policy.scale.highest
    assert set(policy.destinations) == {ON_BOX}
    assert all(route == (ON_BOX,) for route in policy.routes.values())


@pytest.mark.parametrize(
    ("edit", "key", "at", "words"),
    [
        (lambda t: t + "\n[bogus]\nx = 1\n", "bogus", "[bogus]", "unknown key"),
        (
            lambda t: t.replace('id = "t"', 'id = "t"\ncolour = "red"'),
            "policy.colour",
            "colour",
            "unknown key",
        ),
        (
            lambda t: t.replace('default_label = "restricted"', 'default_label = "secret"'),
            "policy.default_label",
            "default_label",
            "unknown label",
        ),
        (
            lambda t: t.replace('public = ["cloud"]', 'internal = ["cloud"]'),
            "routes.internal",
            "internal =",
            "below",
        ),
        (
            lambda t: t.replace('public = ["cloud"]', 'public = ["nowhere"]'),
            "routes.public",
            "public =",
            "unknown destination",
        ),
        (
            lambda t: t.replace('kind = "anthropic"', 'kind = "gemini"'),
            "destinations.cloud.kind",
            "gemini",
            "unknown kind",
        ),
        (
            lambda t: t.replace('api_key_env = "K"', 'api_key = "sk-abc"'),
            "destinations.cloud.api_key",
            "api_key =",
            "must not be written",
        ),
        (
            lambda t: t.replace('api_key_env = "K"', 'headers = { Authorization = "Bearer x" }'),
            "destinations.cloud.headers.Authorization",
            "headers",
            "must not be written",
        ),
        (
            lambda t: (
                t + '\n[[detectors]]\nname = "d"\nkind = "regex"\npattern = "(a)\\\\1"\n'
                'label = "restricted"\n'
            ),
            "detectors.0.pattern",
            "pattern",
            "regex",
        ),
        (
            lambda t: (
                t + '\n[[detectors]]\nname = "q"\nkind = "tree-sitter"\nlanguage = "python"\n'
                'query = "(no_such_node) @x"\nlabel = "restricted"\n'
            ),
            "detectors.0.query",
            "query",
            "tree-sitter",
        ),
        (
            lambda t: (
                t + '\n[[detectors]]\nname = "q"\nkind = "tree-sitter"\nlanguage = "cobol"\n'
                'query = "(x) @x"\nlabel = "restricted"\n'
            ),
            "detectors.0.language",
            "cobol",
            "unknown language",
        ),
        (
            lambda t: t + '\n[[repos]]\nmatch = "github.com/acme/x"\nlabel = "top"\n',
            "repos.0.label",
            "top",
            "unknown label",
        ),
        (lambda t: t + '\n[owners]\n"acme" = "public"\n', "owners.acme", '"acme"', "owner"),
        (
            lambda t: t + '\n[[repos]]\nmatch = "github.com/acme/[ab"\n',
            "repos.0.match",
            "match",
            "unclosed",
        ),
        (lambda t: t + '\n[[repos]]\nmatch = "acme"\n', "repos.0.match", "match", "host/owner"),
        (
            lambda t: t + "\n[audit]\nstore_encrypted_prompts = true\n",
            "audit.store_encrypted_prompts",
            "store_encrypted",
            "security_team_key",
        ),
        (
            lambda t: t + '\n[destinations.on-box]\nkind = "llama-cpp"\nclearance = "public"\n',
            "destinations.on-box",
            "[destinations.on-box]",
            "on-box",
        ),
    ],
)
def test_errors_name_file_line_and_key(edit: object, key: str, at: str, words: str) -> None:
    text = edit(MINIMAL)  # type: ignore[operator]
    line = next(n for n, raw in enumerate(text.splitlines(), 1) if at in raw)
    error = error_for(text)
    assert error.file == "p.toml"
    assert error.key == key
    assert error.line == line, str(error)
    assert words in str(error)
    assert str(error).startswith(f"p.toml:{line}: [{key}]")


def test_invalid_toml_reports_line() -> None:
    error = error_for('[policy]\nid = "x"\nlabels = [\n')
    assert error.line is not None and "TOML" in str(error)


def test_missing_id_and_bad_scale() -> None:
    assert error_for("[policy]\n").key == "policy.id"
    assert error_for('[policy]\nid = "x"\nlabels = ["a", "a"]\n').key == "policy.labels"


def test_custom_label_scale_and_expiry() -> None:
    text = (
        '[policy]\nid = "c"\nlabels = ["open", "team", "secret", "top"]\n'
        'default_label = "secret"\nexpires = 2027-01-01T00:00:00Z\n'
    )
    policy = parse_policy(text.encode(), "c.toml")
    assert policy.scale.highest.name == "top"
    assert policy.destinations[ON_BOX].clearance.name == "top"
    assert policy.expires is not None and policy.expires.year == 2027
    assert set(policy.routes) == {"open", "team", "secret", "top"}


@pytest.mark.parametrize(
    "value",
    ["2027-01-01", "2027-01-01T00:00:00Z", '"2027-01-01T00:00:00+00:00"', "2027-01-01T00:00:00"],
)
def test_expires_forms_are_utc(value: str) -> None:
    policy = parse_policy(f'[policy]\nid = "e"\nexpires = {value}\n'.encode(), "e.toml")
    assert policy.expires is not None and policy.expires.utcoffset() is not None
    assert (policy.expires.year, policy.expires.month, policy.expires.day) == (2027, 1, 1)
    assert error_for('[policy]\nid = "e"\nexpires = 5\n').key == "policy.expires"


def test_load_policy_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "nope.toml")
    assert info.value.file.endswith("nope.toml") and "cannot read" in str(info.value)
    good = tmp_path / "p.toml"
    good.write_text(MINIMAL, encoding="utf-8")
    assert load_policy(good).id == "t"


def test_safe_regex_rejects_catastrophic_shapes() -> None:
    for pattern in ("(a+)+$", "(a*)*b", "(a|aa)+c", "(x)\\1", "(?=a)b"):
        with pytest.raises(PatternError):
            _static_check(pattern)
    _static_check("PAT-[0-9]{8}")
    with pytest.raises(PatternError):
        compile_safe_regex("a" * 600)
    with pytest.raises(PatternError):
        compile_safe_regex("(unclosed")
    assert compile_safe_regex("PAT-[0-9]{8}").search("x PAT-12345678") is not None


def test_failed_reload_keeps_the_policy_in_force(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    first, error = load_or_keep(path, None)
    assert first.id == "t" and error is None
    path.write_text(MINIMAL.replace('kind = "anthropic"', 'kind = "bogus"'), encoding="utf-8")
    kept, error = load_or_keep(path, first)
    assert kept is first and error is not None and error.key == "destinations.cloud.kind"
    fallback, error = load_or_keep(tmp_path / "missing.toml", None)
    assert fallback is builtin_policy() and error is not None


def test_without_re2_the_static_check_guards(monkeypatch: pytest.MonkeyPatch) -> None:
    import onbox.classification.patterns as patterns

    monkeypatch.setattr(patterns, "_re2", None)
    with pytest.raises(PatternError, match="nested quantifiers"):
        patterns.compile_safe_regex("(a+)+$")
    assert patterns.compile_safe_regex("PAT-[0-9]{8}").search("PAT-12345678") is not None
    text = (
        MINIMAL
        + '\n[[detectors]]\nname = "d"\nkind = "regex"\npattern = "(x*)*y"\nlabel = "internal"\n'
    )
    assert error_for(text).key == "detectors.0.pattern"
