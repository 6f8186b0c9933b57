"""Errors raised by :mod:`onbox.collector`.

::

    CollectorError                 anything the collector refuses or cannot do
    ├── UploadRejected             an upload is refused; ``status`` is the HTTP answer
    │                              (400 malformed or truncated, 401 signature, 403 unknown
    │                              device, 409 fork or rewritten history, 413 too large,
    │                              422 an entry fails its own hash or signature)
    └── StoreUnavailable           the database cannot be reached or did not commit (503;
                                   shippers keep their queue and retry)

Every message says what the sender or operator should do next.
"""

from __future__ import annotations


class CollectorError(Exception):
    """The collector refused a request or could not complete it."""


class UploadRejected(CollectorError):
    """An upload is refused; nothing from it was stored."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class StoreUnavailable(CollectorError):
    """The database is unreachable or failed mid-transaction; retry later."""
