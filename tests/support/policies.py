"""Test policies built in code, instead of TOML copied into every test.

    PolicyBuilder("route-test").repo("github.com/acme/docs", "public")
        .destination("cloud", kind="openai", base_url=url, model="m", clearance="public")
        .route("public", "cloud").write(tmp_path / "policy.toml")

Every policy has the on-box destination (``[destinations.on-box]``, llama-cpp, cleared
for the highest label), and every label's route ends on it. ``extra`` is raw TOML for
the sections the builder does not model (``[content]``, ``[[paths]]``, …); ``policy()``
adds keys to ``[policy]`` itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ON_BOX = "on-box"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


@dataclass
class PolicyBuilder:
    """A classification policy, rendered as the TOML ``onbox`` loads."""

    id: str = "test-policy"
    labels: tuple[str, ...] = ("public", "internal", "restricted")
    default_label: str = "restricted"
    extra: str = ""
    repos: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    destinations: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: dict[str, list[str]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def policy(self, **fields: Any) -> PolicyBuilder:
        """More ``[policy]`` keys (``security_team_key``, ``expires``, ``description``, …)."""
        self.settings.update(fields)
        return self

    def repo(self, match: str, label: str, **fields: Any) -> PolicyBuilder:
        """``[[repos]]``: repositories matching ``match`` carry ``label`` (and ``tags``, …)."""
        self.repos.append((match, label, fields))
        return self

    def destination(self, name: str, **fields: Any) -> PolicyBuilder:
        """``[destinations.NAME]`` with ``fields`` (kind, base_url, model, clearance, …)."""
        self.destinations[name] = fields
        return self

    def route(self, label: str, *names: str) -> PolicyBuilder:
        """``[routes]``: the destinations tried for ``label``, in order (on-box is added last)."""
        self.routes[label] = list(names)
        return self

    def toml(self) -> str:
        """The policy file's text."""
        out = [
            "[policy]",
            f"id = {_value(self.id)}",
            f"labels = {_value(list(self.labels))}",
            f"default_label = {_value(self.default_label)}",
            *(f"{key} = {_value(value)}" for key, value in self.settings.items()),
            "",
        ]
        for match, label, fields in self.repos:
            out += ["[[repos]]", f"match = {_value(match)}", f"label = {_value(label)}"]
            out += [f"{key} = {_value(value)}" for key, value in fields.items()]
            out.append("")
        destinations = {
            ON_BOX: {"kind": "llama-cpp", "clearance": self.labels[-1]},
            **self.destinations,
        }
        for name, fields in destinations.items():
            out.append(f"[destinations.{name}]")
            out += [f"{key} = {_value(value)}" for key, value in fields.items()]
            out.append("")
        out.append("[routes]")
        for label in self.labels:
            names = [n for n in self.routes.get(label, []) if n != ON_BOX] + [ON_BOX]
            out.append(f"{label} = {_value(names)}")
        if self.extra:
            out += ["", self.extra.strip()]
        return "\n".join(out) + "\n"

    def write(self, path: Path) -> Path:
        """Write the policy to ``path`` and return it."""
        path.write_text(self.toml(), encoding="utf-8")
        return path
