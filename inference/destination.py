"""The small interface every completion engine sits behind.

Like httpx's ``BaseTransport``, a :class:`Destination` turns one request into one
answer and knows nothing about LSP, labels or the journal::

    completion = destination.complete(request, cancel)

Engines: ``llama-cpp`` (on-box, :mod:`onbox.inference.local`), ``openai`` and
``anthropic`` (:mod:`onbox.inference.remote`), ``bedrock``
(:mod:`onbox.inference.bedrock`) and ``vertex`` (:mod:`onbox.inference.vertex`). Errors are drawn in
:mod:`onbox.inference.errors`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from onbox.inference import defaults


class DestinationKind(StrEnum):
    """The engine behind a destination: the policy's ``kind`` (journals carry the value).

    The policy parser validates ``kind`` against
    :data:`onbox.classification.policy_model.DESTINATION_KINDS`, the same strings.
    """

    LLAMA_CPP = "llama-cpp"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    BEDROCK = "bedrock"
    VERTEX = "vertex"


class CancelToken:
    """A flag a generation loop polls every token; set by ``$/cancelRequest`` or supersession."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the work to stop at the next token."""
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` has been called."""
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True if cancelled meanwhile."""
        return self._event.wait(timeout)


@dataclass(frozen=True)
class ContextSnippet:
    """Text from another open document, already cleared for the destination."""

    path: str
    text: str
    label: str


@dataclass(frozen=True)
class CompletionRequest:
    """What to complete: the text around the cursor, already windowed and (for egress) redacted."""

    prefix: str
    suffix: str
    language: str | None = None
    path: str | None = None
    context: tuple[ContextSnippet, ...] = ()
    max_tokens: int = defaults.MAX_TOKENS
    temperature: float = defaults.TEMPERATURE
    stop: tuple[str, ...] = ()
    stop_at_block_end: bool = True  # stop generating once the cursor's block has ended


@dataclass
class Completion:
    """One destination's answer, before post-processing."""

    text: str
    model: str
    finish_reason: str = "stop"  # "stop" | "length" | "cancelled"
    prompt_sha256: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # seconds: prompt_eval, generate, total


@runtime_checkable
class Destination(Protocol):
    """A completion engine with a name, a kind and a clearance."""

    name: str
    kind: str  # a DestinationKind
    clearance: str  # highest label it may receive

    def complete(self, request: CompletionRequest, cancel: CancelToken) -> Completion:
        """Generate a completion; stop promptly once ``cancel`` is set."""
        ...

    def describe(self) -> dict[str, Any]:
        """Name, kind, endpoint and model, for status, explain and the journal."""
        ...
