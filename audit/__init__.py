"""The signed, hash-chained audit journal (``onbox.audit``).

The rest of Onbox writes through one small interface::

    journal = open_journal()                     # under paths.journal_dir()
    receipt = journal.append("egress", {...}, durable=True)   # fsynced before returning
    journal.append("completion", {...})          # group-committed
    envelope = journal.store_encrypted_prompt(prompt, security_team_x25519_pub_b64)
    journal.close()                              # or use ``with open_journal() as journal``

``append`` raises :class:`JournalError` when the entry cannot be written; the routing
layer treats that as "no egress" and serves the request on-box.

**Callers never pass raw prompts, document text or secret values in a body**: only
hashes (``promptSha256``, ``documentSha256``), sizes, labels, reasons, destinations
and outcomes. The journal stores exactly what it is given, so this is the caller's duty. The one exception is :meth:`Journal.store_encrypted_prompt`, whose
envelope only the security team's private key opens.

Entry kinds: ``server-start``, ``server-stop``, ``completion``, ``egress``,
``acceptance``, ``policy-applied``, ``policy-rejected``, ``label-changed``,
``key-created``, ``key-rotated``, ``recovered``, ``model-crashed`` (plus ``segment-header``, written by the
journal itself). Format, hashing and signatures: ``docs/journal.md``.

Readers: :func:`verify_journal` (a directory or an export bundle), :func:`journal_stats`,
:func:`iter_entries`, :func:`export_bundle`, :func:`load_checkpoint`, :func:`decrypt_prompt`.

Keys: Ed25519, created on first use under ``paths.data_dir()/"keys"`` (files 0600).
With forward security (the default) the signing key evolves at every new segment and the
old private key is deleted; :attr:`Journal.device_fingerprint` stays the first key's
fingerprint, the one the security team enrols. Several processes may append to one
journal at once (an ``flock`` per append); give each journal its own key directory.

Errors (:mod:`onbox.audit.errors`)::

    JournalError
    ├── JournalUnwritable         disk full, read-only, permissions
    ├── JournalCorrupt            the tail on disk is not a valid entry
    ├── JournalKeyError           device key missing or not the journal's key
    └── CanonicalEncodingError    a body value JSON cannot carry exactly
    EnvelopeError                 an encrypted prompt cannot be opened
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from onbox import paths
from onbox.audit.bundle import export_bundle, load_checkpoint
from onbox.audit.check import Problem
from onbox.audit.entry import KINDS, Receipt
from onbox.audit.envelope import decrypt_prompt, encrypt_prompt, generate_recipient_key
from onbox.audit.errors import (
    CanonicalEncodingError,
    EnvelopeError,
    JournalCorrupt,
    JournalError,
    JournalKeyError,
    JournalUnwritable,
)
from onbox.audit.journal import DEFAULT_COMMIT_INTERVAL, DEFAULT_SEGMENT_BYTES
from onbox.audit.journal import Journal as _JournalBase
from onbox.audit.keys import KeyStore
from onbox.audit.stats import iter_entries, journal_stats
from onbox.audit.verify import VerifyResult, verify_journal

__all__ = [
    "KINDS",
    "CanonicalEncodingError",
    "EnvelopeError",
    "Journal",
    "JournalCorrupt",
    "JournalError",
    "JournalKeyError",
    "JournalUnwritable",
    "Problem",
    "Receipt",
    "VerifyResult",
    "decrypt_prompt",
    "default_key_dir",
    "encrypt_prompt",
    "export_bundle",
    "generate_recipient_key",
    "iter_entries",
    "journal_stats",
    "load_checkpoint",
    "open_journal",
    "verify_journal",
]


class Journal(_JournalBase):  # type: ignore[misc,unused-ignore]
    """An open journal (see :mod:`onbox.audit.journal`), plus encrypted prompt storage."""

    def store_encrypted_prompt(self, prompt: str, recipient_public_key_b64: str) -> dict[str, Any]:
        """Encrypt ``prompt`` to the security team's X25519 key; put the result in the egress body."""
        envelope: dict[str, Any] = encrypt_prompt(prompt, recipient_public_key_b64)
        return envelope


def default_key_dir() -> Path:
    """Where the device key lives by default: ``paths.data_dir()/"keys"``."""
    return paths.data_dir() / "keys"


def open_journal(
    directory: Path | None = None,
    *,
    device_key_dir: Path | None = None,
    segment_max_bytes: int = DEFAULT_SEGMENT_BYTES,
    commit_interval: float = DEFAULT_COMMIT_INTERVAL,
    forward_secure: bool = True,
    clock: Callable[[], datetime] | None = None,
) -> Journal:
    """Open (creating if needed) the journal; creates the device key on first use.

    ``forward_secure`` (default on) evolves the signing key at every new segment (each
    UTC day, or every ``segment_max_bytes``) and deletes the old private key, so a later
    compromise of the machine cannot re-sign earlier segments. The device fingerprint
    stays that of the first key; verifiers follow the ``key-rotated`` chain from it.
    One journal per key directory: two journals sharing ``device_key_dir`` would delete
    each other's keys.
    Raises :class:`JournalError` when the directory or key cannot be used.
    """
    return Journal(
        directory or paths.journal_dir(),
        KeyStore(device_key_dir or default_key_dir()),
        segment_max_bytes=segment_max_bytes,
        commit_interval=commit_interval,
        forward_secure=forward_secure,
        clock=clock,
    )
