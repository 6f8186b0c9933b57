"""Errors raised by :mod:`onbox.inference`.

::

    InferenceError
    ├── ModelError            the on-box model is missing, corrupt or unsupported
    ├── Cancelled             the request was cancelled or superseded
    └── DestinationError      a remote destination failed (falls back along the route)
        ├── DestinationTimeout
        ├── DestinationUnavailable   connection refused, TLS failure, 5xx, 429
        └── DestinationProtocolError invalid JSON or an answer of the wrong shape

Each carries a message that says what the user can do next.
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base of every inference error."""


class ModelError(InferenceError):
    """The on-box model file cannot be used; the message names the file and the fix."""


class Cancelled(InferenceError):
    """The request was cancelled (``$/cancelRequest``) or superseded by a newer one."""


class DestinationError(InferenceError):
    """A destination other than on-box failed; routing falls back along the label's list."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DestinationTimeout(DestinationError):
    """The destination did not answer in time."""


class DestinationUnavailable(DestinationError):
    """Connection refused, TLS verification failed, 5xx, or rate-limited."""


class DestinationProtocolError(DestinationError):
    """The destination answered with something that is not a valid completion."""
