"""Per-device chain checks on a stream of entries (no segment files on the collector).

:func:`key_timeline` proves, from the device's root key, which key signs from which seq
(the first segment header, then each ``key-rotated`` entry co-signed by the key before).
:func:`check_run` then checks every uploaded entry on its own (exact form, hash,
signature by the key in effect at its seq) and its link to the entry before it, and
:func:`link_runs` links runs checked apart (:mod:`onbox.collector.verifier` checks the
runs of a large upload on every core); :func:`check_entries` does both in this process.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from onbox.audit.check import parse_entry
from onbox.audit.entry import GENESIS_PREV, HEADER_KIND, signing_message
from onbox.audit.keys import fingerprint_of, public_key_from_b64, verify_signature
from onbox.collector.errors import UploadRejected
from onbox.collector.store import EntryRow, entry_row

_UNLINKED = "prev does not match the entry before it"


@dataclass(frozen=True)
class KeySpan:
    """``fingerprint`` signs entries from ``from_seq`` on (until the next span)."""

    from_seq: int
    fingerprint: str
    public_b64: str
    entry_hash: str  # the header or key-rotated entry that introduced it
    public: Any = None


def _public(public_b64: Any, claimed: Any) -> Any:
    try:
        raw = base64.b64decode(str(public_b64), validate=True)
        public = public_key_from_b64(str(public_b64))
    except (ValueError, binascii.Error) as exc:
        raise UploadRejected(401, f"a public key in the key history is malformed: {exc}") from exc
    if fingerprint_of(raw) != claimed:
        raise UploadRejected(401, f"key {claimed} in the key history has another public key")
    return public


def key_timeline(device: str, lines: Sequence[str]) -> list[KeySpan]:
    """The device's proven key spans; raises :class:`UploadRejected` (401) if unproven.

    Every upload carries the whole history (one rotation a day with forward security),
    so a history proven once is remembered: a year of keys is 730 signatures otherwise.
    """
    return list(_proven(device, tuple(lines)))


@functools.lru_cache(maxsize=4096)
def _proven(device: str, lines: tuple[str, ...]) -> tuple[KeySpan, ...]:
    spans: list[KeySpan] = []
    for text in lines:
        entry, what = parse_entry(text.encode("utf-8"))
        if what is not None:
            raise UploadRejected(401, f"key history: {what}")
        body, message = entry["body"], signing_message(entry["hash"])
        public = _public(body.get("public_key"), entry["key"])
        if not spans:
            if entry["kind"] != HEADER_KIND or entry["seq"] != 0 or entry["key"] != device:
                raise UploadRejected(
                    401,
                    "key history must start with the journal's first header, signed by "
                    f"the device key {device}",
                )
            ok = verify_signature(public, entry["sig"], message)
        else:
            last = spans[-1]
            ok = (
                entry["kind"] == "key-rotated"
                and entry["seq"] > last.from_seq
                and body.get("old_key") == last.fingerprint
                and body.get("new_key") == entry["key"]
                and verify_signature(public, entry["sig"], message)
                and verify_signature(last.public, str(entry.get("cosig", "")), message)
            )
        if not ok:
            raise UploadRejected(
                401, f"key history entry {entry['seq']} does not extend the device's key chain"
            )
        spans.append(
            KeySpan(entry["seq"], str(entry["key"]), str(body["public_key"]), entry["hash"], public)
        )
    if not spans:
        raise UploadRejected(401, "the upload carries no key history")
    return tuple(spans)


def span_at(spans: Sequence[KeySpan], seq: int) -> KeySpan:
    """The key in effect at ``seq``."""
    current = spans[0]
    for span in spans:
        if span.from_seq > seq:
            break
        current = span
    return current


@dataclass(frozen=True)
class BadEntry:
    """The first entry of a run that failed its checks, and why.

    ``prev`` is the entry's ``prev`` when it parsed and failed only its key or signature
    check, which come after the link check: the caller links a run's first entry to the
    run before it, so it can still report a broken link first, as one pass would.
    """

    seq: int
    what: str
    prev: str | None = None


def check_run(
    device: str, lines: Sequence[str], first_seq: int, spans: Sequence[KeySpan]
) -> tuple[list[EntryRow], BadEntry | None]:
    """Check ``lines`` (seqs ``first_seq``…) up to the first bad one; their rows and it.

    Each entry: exact form, hash, seq, the link to the entry before it within the run, the
    key in effect at its seq, its signature. The run's first entry is linked by
    :func:`link_runs`, so runs can be checked apart (in worker processes).
    """
    introduced = {s.from_seq: s for s in spans}
    rows: list[EntryRow] = []
    prev_hash: str | None = None
    for i, text in enumerate(lines):
        seq = first_seq + i
        entry, what = parse_entry(text.encode("utf-8"))
        if what is None and entry["seq"] != seq:
            what = f"seq {entry['seq']} where {seq} was due (uploads are contiguous)"
        if what is None and prev_hash is not None and entry["prev"] != prev_hash:
            what = _UNLINKED
        if what is not None:
            return rows, BadEntry(seq, what)
        what = _key_problem(device, entry, span_at(spans, seq), introduced.get(seq))
        if what is not None:
            return rows, BadEntry(seq, what, entry["prev"] if i == 0 else None)
        prev_hash = entry["hash"]
        rows.append(entry_row(entry))
    return rows, None


def link_runs(runs: Iterable[tuple[list[EntryRow], BadEntry | None]]) -> list[EntryRow]:
    """Join consecutive checked runs into one chain; raises 422 naming the first bad entry."""
    chain: list[EntryRow] = []
    for rows, bad in runs:
        last = chain[-1].hash if chain else None
        if last is not None and rows and rows[0].prev != last:
            raise UploadRejected(422, f"entry {rows[0].seq}: {_UNLINKED}")
        if bad is not None:
            if last is not None and not rows and bad.prev is not None and bad.prev != last:
                raise UploadRejected(422, f"entry {bad.seq}: {_UNLINKED}")
            raise UploadRejected(422, f"entry {bad.seq}: {bad.what}")
        chain.extend(rows)
    return chain


def check_entries(
    device: str, lines: Sequence[str], first_seq: int, spans: Sequence[KeySpan]
) -> list[EntryRow]:
    """Parse and check ``lines`` (seqs ``first_seq``…) in this process; raises 422 naming
    the first bad one. :class:`~onbox.collector.verifier.EntryVerifier` spreads the same
    checks over worker processes."""
    return link_runs([check_run(device, lines, first_seq, spans)])


def portable(spans: Sequence[KeySpan]) -> tuple[tuple[int, str, str, str], ...]:
    """``spans`` as plain values for another process (:func:`from_portable` undoes it)."""
    return tuple((s.from_seq, s.fingerprint, s.public_b64, s.entry_hash) for s in spans)


def from_portable(plain: Sequence[tuple[int, str, str, str]]) -> list[KeySpan]:
    """Key spans from :func:`portable`'s values (their keys were proven by the sender)."""
    return [KeySpan(seq, fp, b64, digest, _public_key(b64)) for seq, fp, b64, digest in plain]


@functools.lru_cache(maxsize=1024)
def _public_key(public_b64: str) -> Any:
    return public_key_from_b64(public_b64)


def _key_problem(
    device: str, entry: dict[str, Any], span: KeySpan, introduced: KeySpan | None
) -> str | None:
    if entry["key"] != span.fingerprint:
        return f"signed by {entry['key']}, but the key in effect is {span.fingerprint}"
    if introduced is not None and introduced.entry_hash != entry["hash"]:
        return "differs from the key history's entry at this seq"
    if entry["kind"] == "key-rotated" and introduced is None:
        return "a key rotation the key history does not hold"
    if entry["kind"] == HEADER_KIND:
        body = entry["body"]
        if body.get("device") != device:
            return f"header names device {body.get('device')}"
        if entry["seq"] == 0 and entry["prev"] != GENESIS_PREV:
            return "the first entry does not start a journal"
    if not verify_signature(span.public, entry["sig"], signing_message(entry["hash"])):
        return "signature is invalid"
    return None
