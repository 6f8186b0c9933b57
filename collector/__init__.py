"""The security team's collector (``onbox.collector``): ingest, verify, store, alert, search.

Workstations upload journal entries signed with their journal key
(:mod:`onbox.audit.upload`); the collector checks every entry's signature and each
device's chain (:mod:`~onbox.collector.chain`, :mod:`~onbox.collector.ingest`), stores
them once in SQLite or PostgreSQL (:mod:`~onbox.collector.store`), raises alerts for
gaps, forks, truncation, rewritten history, tampered entries, unknown and silent
devices, and serves search and a dashboard over HTTP (:mod:`~onbox.collector.app`).

The collector holds no private key and never imports :mod:`onbox.server`; sealed prompts
are stored as they arrive and opened offline with the security team's key.

Errors: :mod:`onbox.collector.errors`.
"""

from __future__ import annotations

from onbox.collector.errors import CollectorError, StoreUnavailable, UploadRejected
from onbox.collector.ingest import Enrolment, IngestResult, ingest
from onbox.collector.query import EntryQuery, find_entries, list_alerts, list_devices
from onbox.collector.store import Store

__all__ = [
    "CollectorError",
    "Enrolment",
    "EntryQuery",
    "IngestResult",
    "Store",
    "StoreUnavailable",
    "UploadRejected",
    "find_entries",
    "ingest",
    "list_alerts",
    "list_devices",
]
