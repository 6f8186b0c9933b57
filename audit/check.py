"""Checking one segment file on its own: every line's hash, signature, seq and chain link.

:func:`check_segment` runs in a worker process for large journals, so it takes only a
path and plain values and returns a picklable :class:`SegmentReport`; the links between
segments and the key chain across them are checked by :mod:`onbox.audit.verify`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onbox.audit.canonical import canonical_json_fast, fast_loads
from onbox.audit.entry import CORE_FIELDS, FORMAT_VERSION, HEADER_KIND, signing_message
from onbox.audit.errors import CanonicalEncodingError
from onbox.audit.keys import fingerprint_of, public_key_from_b64, verify_signature

_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "v": int,
    "seq": int,
    "time": str,
    "kind": str,
    "body": dict,
    "prev": str,
    "key": str,
    "hash": str,
    "sig": str,
}


@dataclass(frozen=True)
class Problem:
    """Where verification failed and why. ``line`` is 1-based within ``segment``."""

    segment: str
    line: int
    seq: int | None
    what: str

    def __str__(self) -> str:
        seq = f", seq {self.seq}" if self.seq is not None else ""
        line = f" line {self.line}" if self.line else ""  # 0: the bundle or checkpoint as a whole
        return f"{self.segment}{line}{seq}: {self.what}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"segment": self.segment, "line": self.line, "seq": self.seq, "what": self.what}


@dataclass
class SegmentReport:
    """What one segment holds, as far as it could be checked alone."""

    name: str
    index: int
    size: int = 0
    sha256: str = ""
    lines: int = 0
    header: dict[str, Any] | None = None
    first_seq: int | None = None
    first_prev: str | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    start_key: str | None = None
    end_key: str | None = None
    keys: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    watch_hash: str | None = None  # hash of the entry whose seq was asked for
    watch_line: int = 0  # and its line
    problem: Problem | None = None
    notes: list[Problem] = field(default_factory=list)


def check_segment(path: Path, index: int, watch_seq: int | None = None) -> SegmentReport:
    """Check ``path`` (segment number ``index``) and stop at its first problem."""
    report = SegmentReport(name=path.name, index=index)
    data = path.read_bytes()
    report.size = len(data)
    report.sha256 = hashlib.sha256(data).hexdigest()
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline
    public = None
    key_id: str | None = None
    prev_hash: str | None = None
    prev_seq: int | None = None
    for number, raw in enumerate(lines, start=1):
        report.lines = number
        entry, what = parse_entry(raw)
        seq = entry.get("seq") if isinstance(entry.get("seq"), int) else None
        if what is None:
            assert entry is not None
            what, public, key_id = _check_keys(entry, number, public, key_id, report)
        if what is None and prev_seq is not None and seq != prev_seq + 1:
            what = _seq_problem(prev_seq, seq)
        if what is None and prev_hash is not None and entry["prev"] != prev_hash:
            what = "prev does not match the hash of the entry before it (an entry was removed, inserted or reordered)"
        if what is not None:
            report.problem = Problem(path.name, number, seq, what)
            return report
        if number == 1:
            report.first_seq, report.first_prev = seq, entry["prev"]
        prev_seq, prev_hash = seq, entry["hash"]
        report.last_seq, report.last_hash = seq, prev_hash
        report.kinds[entry["kind"]] = report.kinds.get(entry["kind"], 0) + 1
        if seq == watch_seq:
            report.watch_hash, report.watch_line = prev_hash, number
        if entry["kind"] == "recovered":
            report.notes.append(
                Problem(path.name, number, seq, f"journal recovered after a crash: {entry['body']}")
            )
    if torn:
        report.problem = Problem(
            path.name,
            len(lines) + 1,
            None,
            f"torn entry: {len(torn)} bytes without a final newline (cut mid-entry)",
        )
    elif not lines:
        report.problem = Problem(path.name, 1, None, "segment is empty (no header)")
    report.end_key = key_id
    return report


def parse_entry(raw: bytes) -> tuple[dict[str, Any], str | None]:
    """Parse one line and check its fields and hash; the entry and what is wrong (or None)."""
    try:
        entry, plain = fast_loads(raw)
    except ValueError:
        return {}, "line is not valid JSON (bytes were changed or the line was cut)"
    if not isinstance(entry, dict):
        return {}, "line is not a JSON object"
    for name, kind in _FIELD_TYPES.items():
        value = entry.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            return entry, f"field {name!r} is missing or has the wrong type"
    if entry["v"] != FORMAT_VERSION:
        return entry, f"unknown format version {entry['v']}"
    try:
        core = {k: entry[k] for k in CORE_FIELDS}
        encoded = canonical_json_fast(core, plain)
    except CanonicalEncodingError as exc:
        return entry, f"entry cannot be encoded canonically: {exc}"
    digest = hashlib.sha256(encoded).hexdigest()
    if digest != entry["hash"]:
        return entry, "hash does not match the entry's content (the entry was changed)"
    # The line must be exactly what the writer produces, so that no byte can change
    # unnoticed (duplicate keys, added fields or whitespace) and every parser agrees.
    tail = f',"hash":"{digest}","sig":"{entry["sig"]}"'
    if "cosig" in entry:
        tail += f',"cosig":"{entry["cosig"]}"'
    if raw != encoded[:-1] + tail.encode("utf-8") + b"}":
        return (
            entry,
            "line is not in the exact form the writer produces (bytes were added or changed)",
        )
    return entry, None


def _check_keys(
    entry: dict[str, Any],
    number: int,
    public: Any,
    key_id: str | None,
    report: SegmentReport,
) -> tuple[str | None, Any, str | None]:
    """Check header placement, the signing key in effect and the signature(s)."""
    kind, body = entry["kind"], entry["body"]
    if (kind == HEADER_KIND) != (number == 1):
        what = (
            "segment header is not the first line"
            if number > 1
            else "first line is not a segment header"
        )
        return what, public, key_id
    message = signing_message(entry["hash"])
    if number == 1:
        report.header = body
        if body.get("segment") != report.index:
            return (
                f"header says segment {body.get('segment')} but the file is segment {report.index} (segment replaced or renamed)",
                public,
                key_id,
            )
        public, key_id, bad_key = _load_key(body.get("public_key"), entry["key"])
        if bad_key:
            return bad_key, public, key_id
        report.start_key = key_id
        report.keys.append(str(key_id))
    elif kind == "key-rotated":
        if body.get("old_key") != key_id or body.get("new_key") != entry["key"]:
            return (
                "key-rotated entry does not name the key in effect as old_key and its signer as new_key",
                public,
                key_id,
            )
        if not verify_signature(public, str(entry.get("cosig", "")), message):
            return "key-rotated entry lacks a valid co-signature by the old key", public, key_id
        public, key_id, bad_key = _load_key(body.get("public_key"), entry["key"])
        if bad_key:
            return bad_key, public, key_id
        report.keys.append(str(key_id))
    if entry["key"] != key_id:
        return f"signed by key {entry['key']}, but the key in effect is {key_id}", public, key_id
    if not verify_signature(public, entry["sig"], message):
        return "signature is invalid", public, key_id
    return None, public, key_id


def _load_key(public_b64: Any, claimed: str) -> tuple[Any, str | None, str | None]:
    try:
        raw = base64.b64decode(str(public_b64), validate=True)
        public = public_key_from_b64(str(public_b64))
    except (ValueError, binascii.Error):
        return None, None, "public key in the entry is malformed"
    if fingerprint_of(raw) != claimed:
        return (
            None,
            None,
            f"public key has fingerprint {fingerprint_of(raw)}, entry claims {claimed}",
        )
    return public, claimed, None


def _seq_problem(prev_seq: int, seq: int | None) -> str:
    if seq is None:
        return "seq is missing"
    if seq <= prev_seq:
        return f"seq {seq} does not follow {prev_seq} (entry duplicated or reordered)"
    return f"seq jumps from {prev_seq} to {seq} ({seq - prev_seq - 1} entries missing)"
