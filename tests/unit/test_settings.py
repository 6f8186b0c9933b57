"""The server's settings: parsing, and one source of defaults for docs and editors.

The server's ``Settings`` dataclass tree is the only place a default is defined. The
settings table in docs/protocol.md must list every key with that default and nothing
else; VS Code must not declare defaults of its own (it would send them as if the user had
set them), and where its descriptions name the server's default, the number must be it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from onbox.inference import defaults
from onbox.inference.destination import CompletionRequest
from onbox.inference.local import ModelSettings
from onbox.inference.routing import RequestSettings
from onbox.server.cli import add_log_file
from onbox.server.settings import CompletionSection, Settings, parse_settings

ROOT = Path(__file__).resolve().parents[2]


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def server_defaults(node: Any = None, prefix: str = "") -> dict[str, Any]:
    """Every setting of the server as ``{"completion.maxTokens": 64, ...}`` (JSON values)."""
    node = Settings() if node is None else node
    out: dict[str, Any] = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        key = prefix + camel(f.name)
        if dataclasses.is_dataclass(value):
            out.update(server_defaults(value, key + "."))
        else:
            out[key] = value
    return out


def documented_defaults() -> dict[str, Any]:
    """The settings table of docs/protocol.md as ``{key: default}``."""
    text = (ROOT / "docs" / "protocol.md").read_text("utf-8")
    section = text.split("## `initializationOptions`", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([\w.]+)` \| `([^`]*)` \|", section, re.MULTILINE)
    assert rows, "docs/protocol.md has no settings table"
    return {key: json.loads(default) for key, default in rows}


def test_protocol_doc_lists_every_setting_with_the_servers_default() -> None:
    documented = documented_defaults()
    expected = server_defaults()
    assert sorted(documented) == sorted(expected), "settings documented vs. the server's"
    for key, value in expected.items():
        doc = documented[key]
        assert doc == value and type(doc) is type(value), f"{key}: documented {doc!r}, is {value!r}"


def test_protocol_doc_examples_use_only_real_settings() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text("utf-8")
    section = text.split("## `initializationOptions`", 1)[1].split("\n## ", 1)[0]
    for block in re.findall(r"```json\n(.*?)```", section, re.DOTALL):
        settings, problems = parse_settings(json.loads(block))
        assert problems == [], problems
        assert settings != Settings()


def test_every_layer_defaults_to_the_servers_completion_settings() -> None:
    server = CompletionSection()
    request = CompletionRequest(prefix="", suffix="")
    routed = RequestSettings()
    model = ModelSettings()
    assert server.temperature == request.temperature == routed.temperature == model.temperature
    assert server.max_tokens == request.max_tokens == routed.max_tokens == model.max_tokens
    assert (server.prefix_tokens, server.suffix_tokens) == (
        model.prefix_tokens,
        model.suffix_tokens,
    )
    assert server.temperature == defaults.TEMPERATURE == 0.0
    assert server.prefix_tokens == defaults.PREFIX_TOKENS == 1536


def vscode_properties() -> dict[str, dict[str, Any]]:
    manifest = json.loads((ROOT / "editors" / "vscode" / "package.json").read_text("utf-8"))
    props: dict[str, dict[str, Any]] = manifest["contributes"]["configuration"]["properties"]
    return props


def test_vscode_declares_no_defaults_of_its_own_and_names_the_servers() -> None:
    expected = server_defaults()
    props = vscode_properties()
    server_keys = [k for k in props if k.removeprefix("onbox.") in expected]
    assert "onbox.completion.temperature" in server_keys
    for key in server_keys:
        prop = props[key]
        assert prop.get("default") is None, f"{key} has a default of its own"
        text = prop.get("markdownDescription") or prop.get("description") or ""
        named = re.search(r"server's default, `([^`]+)`", text)
        if named:
            assert json.loads(named.group(1)) == expected[key.removeprefix("onbox.")], key


def test_editor_docs_state_no_stale_defaults() -> None:
    stale = re.compile(r"temperature\s*=\s*0\.2|prefixTokens\s*=\s*1024|1,024|0\.2,")
    for path in ("editors/nvim/doc/onbox.txt", "docs/vscode.md", "docs/nvim.md", "README.md"):
        text = (ROOT / path).read_text("utf-8")
        assert not stale.search(text), f"{path}: {stale.search(text)}"


# -- parse_settings ------------------------------------------------------------------


def test_parse_accepts_the_section_or_an_object_holding_it() -> None:
    direct, problems = parse_settings({"completion": {"maxTokens": 16}})
    wrapped, more = parse_settings({"onbox": {"completion": {"maxTokens": 16}}})
    assert problems == more == []
    assert direct == wrapped and direct.completion.max_tokens == 16
    assert direct.completion.temperature == CompletionSection().temperature


def test_a_bad_value_keeps_its_default_and_names_the_key() -> None:
    settings, problems = parse_settings(
        {"completion": {"maxTokens": "many", "temperature": 0.5}, "model": {"threads": True}}
    )
    assert settings.completion.max_tokens == 64 and settings.completion.temperature == 0.5
    assert settings.model.threads == 0
    assert len(problems) == 2
    assert any("onbox.completion.maxTokens" in p and "keeping 64" in p for p in problems)
    assert any("onbox.model.threads" in p for p in problems)


def test_unknown_keys_and_non_object_sections_are_reported() -> None:
    settings, problems = parse_settings({"completion": 5, "colour": "blue", "logFile": "/x"})
    assert settings.completion == CompletionSection() and settings.log_file == "/x"
    assert problems == [
        "onbox.completion must be an object, got int; using defaults",
        "unknown setting onbox.colour; ignored",
    ]


def test_none_keeps_the_base_settings() -> None:
    base, _ = parse_settings({"completion": {"maxTokens": 8}})
    assert parse_settings(None, base) == (base, [])


def test_log_file_receives_the_log(tmp_path: Path) -> None:
    target = tmp_path / "server.log"
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        assert add_log_file(str(target)) is None
        assert add_log_file(str(target)) is None  # the same file is added once
        added = [h for h in root.handlers if h not in before]
        assert len(added) == 1
        logging.getLogger("onbox.test").warning("written to %s", "the log file")
        added[0].flush()
        assert "WARNING onbox.test: written to the log file" in target.read_text()
    finally:
        for handler in root.handlers[len(before) :]:
            handler.close()
        root.handlers[:] = before


def test_unwritable_log_file_is_a_message(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    problem = add_log_file(str(blocker / "server.log"))
    assert problem is not None and "cannot write the log file" in problem


@pytest.mark.parametrize("section", ["model", "completion", "policy", "journal"])
def test_every_section_is_documented(section: str) -> None:
    assert any(k.startswith(section + ".") for k in documented_defaults())
