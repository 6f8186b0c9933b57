"""The signed, hash-chained audit journal (``onbox.audit``).

The rest of Onbox writes through one small interface::

    journal = open_journal()                     # under paths.journal_dir()
    receipt = journal.append("egress", {...}, durable=True)   # fsynced before returning
    journal.append("completion", {...})          # group-committed

``append`` raises :class:`JournalError` when the entry cannot be written; the routing
layer treats that as "no egress" and serves the request on-box.
"""

from __future__ import annotations
