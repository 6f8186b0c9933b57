"""Errors raised by :mod:`onbox.audit`.

::

    JournalError                  anything that stops the journal from recording an entry
    ├── JournalUnwritable         the directory or disk refuses the write (permissions, disk full)
    ├── JournalCorrupt            the journal on disk is not a journal we can extend
    ├── JournalKeyError           the device key is missing, unreadable or does not match
    └── CanonicalEncodingError    a body value cannot be encoded canonically (NaN, huge int, ...)
    EnvelopeError                 an encrypted prompt envelope cannot be opened
    ShipError                     shipping to the collector did not complete
    ├── CollectorUnreachable      offline, timed out or 5xx: entries stay queued, retry later
    └── UploadRefused             the collector refused an upload (``status``: 4xx)

Every message says what the user should do next. The routing layer treats any
:class:`JournalError` as "no egress": the request is served on-box.
"""

from __future__ import annotations


class JournalError(Exception):
    """The journal could not record an entry; nothing may leave the machine."""


class JournalUnwritable(JournalError):
    """The journal directory or disk refused a write (permissions, read-only, disk full)."""


class JournalCorrupt(JournalError):
    """The journal on disk cannot be extended safely (run ``onbox journal verify``)."""


class JournalKeyError(JournalError):
    """The device signing key is missing, unreadable or does not match the journal."""


class CanonicalEncodingError(JournalError, ValueError):
    """A value cannot be encoded as canonical JSON (non-finite float, int beyond 2**53, ...)."""


class EnvelopeError(Exception):
    """An encrypted prompt envelope is malformed or the private key does not open it."""


class ShipError(Exception):
    """Shipping stopped; what was acknowledged stays acknowledged, the rest stays queued."""


class CollectorUnreachable(ShipError):
    """The collector could not be reached or asked to retry; nothing was lost."""


class UploadRefused(ShipError):
    """The collector refused an upload (HTTP ``status``); its message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
