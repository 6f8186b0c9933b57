"""Settings from ``initializationOptions`` / ``workspace/configuration`` (section ``onbox``).

The raw JSON uses camelCase keys (``contextSize``); they are parsed into a defaulted
dataclass tree with a cattrs converter, one key at a time, so that one bad value keeps
its default instead of discarding everything. Problems are returned as messages that
name the key, for the server to show once.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import cattrs

from onbox.inference import defaults

_converter = cattrs.Converter(forbid_extra_keys=True)


@dataclass
class ModelSection:
    """``onbox.model``: which GGUF and how to run it."""

    path: str | None = None
    context_size: int = 4096
    threads: int = 0
    gpu_layers: int = -1
    extra_buffer_types: str = "auto"  # "auto" (off on AMX CPUs) | "on" | "off"
    worker_idle_seconds: float = 600.0  # the shared model worker exits after this long unused
    deadline_seconds: float = 60.0  # a generation running longer is a hang: restart the worker


@dataclass
class CompletionSection:
    """``onbox.completion``: generation limits and prompt budgets."""

    max_tokens: int = defaults.MAX_TOKENS
    temperature: float = defaults.TEMPERATURE
    prefix_tokens: int = defaults.PREFIX_TOKENS
    suffix_tokens: int = defaults.SUFFIX_TOKENS
    debounce_ms: int = 120  # only applied to a request that closely follows another


@dataclass
class PolicySection:
    """``onbox.policy``: a local policy file and signed-bundle sources."""

    path: str | None = None
    sources: list[str] = field(default_factory=list)
    pull_minutes: float = 15.0


@dataclass
class JournalSection:
    """``onbox.journal``: where the audit journal lives."""

    dir: str | None = None


@dataclass
class Settings:
    """Every setting of ``onbox serve``, with defaults."""

    model: ModelSection = field(default_factory=ModelSection)
    completion: CompletionSection = field(default_factory=CompletionSection)
    policy: PolicySection = field(default_factory=PolicySection)
    journal: JournalSection = field(default_factory=JournalSection)
    log_file: str | None = None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _merge_section(section: Any, raw: Any, prefix: str, problems: list[str]) -> Any:
    if not isinstance(raw, dict):
        problems.append(f"{prefix} must be an object, got {type(raw).__name__}; using defaults")
        return section
    fields = {f.name: f for f in dataclasses.fields(section)}
    updates: dict[str, Any] = {}
    for key, value in raw.items():
        name = _snake(str(key))
        where = f"{prefix}.{key}"
        if name not in fields:
            problems.append(f"unknown setting {where}; ignored")
            continue
        current = getattr(section, name)
        if dataclasses.is_dataclass(current):
            updates[name] = _merge_section(current, value, where, problems)
            continue
        try:
            if isinstance(value, bool) and fields[name].type in ("int", "float"):
                raise TypeError("a boolean is not a number")
            updates[name] = _converter.structure(value, _field_type(section, name))
        except Exception as exc:  # cattrs raises several error types
            problems.append(f"bad value for {where}: {value!r} ({exc}); keeping {current!r}")
    return dataclasses.replace(section, **updates)


def _field_type(section: Any, name: str) -> Any:
    import typing

    return typing.get_type_hints(type(section))[name]


def parse_settings(raw: Any, base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Parse the ``onbox`` settings object; return the settings and the problems found.

    Accepts either the section itself or an object with an ``onbox`` key.
    """
    problems: list[str] = []
    settings = base or Settings()
    if raw is None:
        return settings, problems
    if isinstance(raw, dict) and "onbox" in raw and len(raw) == 1:
        raw = raw["onbox"]
    return _merge_section(settings, raw, "onbox", problems), problems
