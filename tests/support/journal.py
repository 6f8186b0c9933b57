"""An in-memory journal for tests that inject faults (the real one is :mod:`onbox.audit`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Receipt:
    """What ``append`` returns: the entry's sequence number."""

    seq: int
    entry_hash: str = ""


@dataclass
class MemoryJournal:
    """Records entries in order; ``fail = True`` makes appends fail like a full disk."""

    entries: list[tuple[str, dict[str, Any], bool]] = field(default_factory=list)
    fail: bool = False

    def append(self, kind: str, body: Mapping[str, Any], *, durable: bool = False) -> Receipt:
        """Record ``(kind, body, durable)``, or raise ``OSError`` when failing."""
        if self.fail:
            raise OSError("No space left on device")
        self.entries.append((kind, dict(body), durable))
        return Receipt(len(self.entries))

    def store_encrypted_prompt(self, prompt: str, recipient: str) -> dict[str, Any]:
        """A stand-in envelope: says what would be sealed, never the prompt."""
        return {"alg": "test", "recipient": recipient, "bytes": len(prompt)}

    def kinds(self) -> list[str]:
        """The kinds appended, in order."""
        return [kind for kind, _, _ in self.entries]
