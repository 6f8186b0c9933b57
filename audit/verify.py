"""Verifying a whole journal (a directory or an export bundle) as a third party would.

Segments are checked on their own (:mod:`onbox.audit.check`, in a process pool when the
journal is large), then stitched: segment numbering, each header's link to the segment
before it (name, size, SHA-256, last seq and hash), seq continuity, the key chain, the
enrolled device fingerprint and, optionally, a signed checkpoint taken earlier.

A checkpoint taken earlier is judged against what the journal (or bundle) holds:

- its seq lies inside: the entry there must have the checkpoint's hash ("rewritten" if not);
- its seq is the entry just before the first one held (a ``--since`` bundle continuing an
  earlier collection): the first entry's ``prev`` must be the checkpoint's hash;
- its seq lies before that: a **gap** (the missing seq range and the export that fills it);
- its seq lies past the last entry: **truncation**, unless the bundle legitimately ends
  earlier (exported ``--until``, which its own signed checkpoint claims, and that
  checkpoint records the journal at or past the checkpoint's seq).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onbox.audit.check import Problem, SegmentReport, check_segment
from onbox.audit.checkpoint import checkpoint_problem
from onbox.audit.entry import GENESIS_PREV
from onbox.audit.segments import LOCK_NAME, list_segments

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no live-tail re-check
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

PARALLEL_MIN_BYTES = 4 * 1024 * 1024

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Gap:
    """Entries ``first_seq``..``last_seq`` that no verified journal or bundle holds."""

    first_seq: int
    last_seq: int
    after_time: str | None  # time of the last entry held before the gap
    before_time: str | None  # time of the first entry held after it
    device: str | None = None

    @property
    def command(self) -> str:
        """The export, run on the device, that fills the gap."""
        since = f" --since {self.after_time}" if self.after_time else ""
        until = f" --until {self.before_time}" if self.before_time else ""
        return f"onbox journal export{since}{until} --out gap-{self.first_seq}-{self.last_seq}.tar"

    def __str__(self) -> str:
        device = f" on device {self.device}" if self.device else ""
        return (
            f"gap: seq {self.first_seq}–{self.last_seq} are in no bundle verified here; "
            f"fill it by running `{self.command}`{device}"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "after_time": self.after_time,
            "before_time": self.before_time,
            "device": self.device,
            "command": self.command,
        }


@dataclass
class VerifyResult:
    """The outcome of :func:`verify_journal`; ``first_error`` names the first bad entry."""

    ok: bool
    entries: int = 0
    segments: int = 0
    head_seq: int = -1
    head_hash: str = GENESIS_PREV
    device_fingerprint: str | None = None
    keys: list[str] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    first_error: Problem | None = None
    notes: list[Problem] = field(default_factory=list)
    checkpoint_seq: int | None = None
    checkpoint_time: str | None = None
    checkpoint_note: str | None = None  # how the checkpoint was judged, for the OK line
    first_seq: int | None = None
    first_prev: str | None = None
    first_time: str | None = None
    head_time: str | None = None
    exported_seq: int | None = None  # bundles: journal head their own checkpoint records
    until: str | None = None  # bundles: the signed --until end, when exported so
    checkpoint_head_of_export: str | None = None
    gaps: list[Gap] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (``onbox journal verify --json``)."""
        return {
            "ok": self.ok,
            "entries": self.entries,
            "segments": self.segments,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "device_fingerprint": self.device_fingerprint,
            "keys": self.keys,
            "kinds": self.kinds,
            "first_error": self.first_error.to_json() if self.first_error else None,
            "notes": [n.to_json() for n in self.notes],
            "checkpoint_seq": self.checkpoint_seq,
            "checkpoint_time": self.checkpoint_time,
            "checkpoint_note": self.checkpoint_note,
            "first_seq": self.first_seq,
            "first_time": self.first_time,
            "head_time": self.head_time,
            "exported_seq": self.exported_seq,
            "until": self.until,
            "gaps": [g.to_json() for g in self.gaps],
        }


def verify_journal(
    path: Path,
    *,
    expected_fingerprint: str | None = None,
    progress: Progress | None = None,
    checkpoint: Mapping[str, Any] | None = None,
    workers: int | None = None,
) -> VerifyResult:
    """Verify the journal directory or export bundle at ``path``.

    ``expected_fingerprint`` is the enrolled device key: the journal's key chain must
    contain it. ``checkpoint`` is a signed checkpoint taken earlier (a bundle's own is
    used when none is given; see the module docstring for how it is judged). A bundle's
    own signed checkpoint is always checked.
    ``progress(done_bytes, total_bytes)`` is called as segments are checked.
    ``workers`` caps the process pool (default: CPU count; 1 checks in-process).
    """
    if path.is_file():
        from onbox.audit.bundle import open_bundle

        with tempfile.TemporaryDirectory(prefix="onbox-verify-") as tmp:
            contents = open_bundle(path, Path(tmp))
            return _verify_dir(
                contents.directory,
                expected=expected_fingerprint,
                progress=progress,
                checkpoint=checkpoint,
                workers=workers,
                first_segment=contents.first_segment,
                prior_keys=contents.prior_keys,
                own=contents.checkpoint,
            )
    return _verify_dir(
        path,
        expected=expected_fingerprint,
        progress=progress,
        checkpoint=checkpoint,
        workers=workers,
    )


def _verify_dir(
    directory: Path,
    *,
    expected: str | None,
    progress: Progress | None,
    checkpoint: Mapping[str, Any] | None,
    workers: int | None,
    first_segment: int = 1,
    prior_keys: list[str] | None = None,
    own: Mapping[str, Any] | None = None,
) -> VerifyResult:
    segments = list_segments(directory)
    bundle_claims = own.get("bundle") if own is not None else None
    if own is not None and not isinstance(bundle_claims, Mapping):
        bundle_claims = {}  # a bundle checkpoint without claims proves nothing about content
    external = checkpoint is not None
    checkpoint = checkpoint if external else own
    result = VerifyResult(ok=False, segments=len(segments))
    if not segments:
        result.first_error = Problem(str(directory), 0, None, "no journal segments found here")
        return result
    try:
        watch = int(checkpoint["seq"]) if checkpoint is not None else None
    except (KeyError, ValueError, TypeError):
        watch = None
    previous: SegmentReport | None = None
    chain: list[str] = []  # keys proven to descend from the first one, in order
    watched: tuple[str, str, int] | None = None  # hash, segment, line of the checkpoint's seq
    for offset, report in enumerate(_reports(segments, watch, progress, workers)):
        expected_index = first_segment + offset
        problem = None
        if report.problem is not None and report.problem.line == 1:
            problem = report.problem
        elif report.index != expected_index:
            problem = Problem(
                report.name, 1, report.first_seq, f"segment {expected_index} is missing"
            )
        else:
            problem = _link_problem(report, previous, partial_start=first_segment > 1)
            if previous is None and first_segment > 1:
                # A partial bundle: its first key must descend from the device key through
                # the bundle's (verified) key history.
                if report.start_key in (prior_keys or []):
                    assert prior_keys is not None
                    chain.extend(prior_keys[: prior_keys.index(report.start_key)])
                else:
                    problem = problem or Problem(
                        report.name,
                        1,
                        report.first_seq,
                        "header key is not in the bundle's key history",
                    )
        problem = problem or report.problem
        if previous is None and result.first_seq is None:
            result.first_seq, result.first_prev = report.first_seq, report.first_prev
        _absorb(result, report, chain)
        if report.watch_hash is not None:
            watched = (report.watch_hash, report.name, report.watch_line)
        if problem is not None:
            result.first_error = problem
            result.keys = chain
            return result
        if previous is None and first_segment > 1:
            result.notes.append(
                Problem(
                    report.name,
                    1,
                    report.first_seq,
                    "bundle starts here; earlier entries are not included",
                )
            )
        previous = report
    result.keys = chain
    result.first_time = _line_time(segments[0][1], last=False)
    result.head_time = _line_time(segments[-1][1], last=True)
    known = chain + [k for k in prior_keys or [] if k not in chain]
    result.first_error = (
        _bundle_problem(segments, result, bundle_claims)
        or _own_problem(result, own, known)
        or _expectation_problem(
            result, previous, expected, checkpoint, known, watched, external=external
        )
    )
    result.ok = result.first_error is None
    return result


def _line_time(path: Path, *, last: bool) -> str | None:
    """The ``time`` of a segment's first or last complete line (None when unreadable)."""
    import json

    try:
        data = path.read_bytes()
        lines = data.split(b"\n")[:-1]
        return str(json.loads(lines[-1 if last else 0])["time"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _own_problem(
    result: VerifyResult, own: Mapping[str, Any] | None, known: list[str]
) -> Problem | None:
    """A bundle's own checkpoint must be signed by one of the device's keys."""
    if own is None:
        return None
    why = checkpoint_problem(own)
    if why is not None:
        return Problem("checkpoint.json", 0, None, f"bundle's own checkpoint: {why}")
    if own["key"] not in known:
        return Problem(
            "checkpoint.json",
            0,
            None,
            f"bundle's checkpoint is signed by key {own['key']}, not one of this device's keys",
        )
    claims = own.get("bundle") or {}
    result.exported_seq = int(own["seq"])
    result.checkpoint_head_of_export = str(own["head"])
    result.until = str(claims["until"]) if claims.get("until") else None
    return None


def _absorb(result: VerifyResult, report: SegmentReport, chain: list[str]) -> None:
    for key in report.keys:
        if key not in chain:
            chain.append(key)
    if report.last_seq is not None:
        result.entries += sum(report.kinds.values())
        result.head_seq, result.head_hash = report.last_seq, str(report.last_hash)
    for kind, count in report.kinds.items():
        result.kinds[kind] = result.kinds.get(kind, 0) + count
    result.notes.extend(report.notes)
    if result.device_fingerprint is None and report.header is not None:
        result.device_fingerprint = str(report.header.get("device"))


def _link_problem(
    report: SegmentReport, previous: SegmentReport | None, *, partial_start: bool
) -> Problem | None:
    header = report.header or {}
    link = header.get("previous")

    def bad(what: str) -> Problem:
        return Problem(report.name, 1, report.first_seq, what)

    if previous is None:
        if partial_start:
            return None
        if link is not None or report.first_prev != GENESIS_PREV or report.first_seq != 0:
            return bad("first segment does not start the journal (earlier segments were removed)")
        return None
    if not isinstance(link, dict):
        return bad("header does not link to the previous segment")
    expected = {
        "name": previous.name,
        "bytes": previous.size,
        "sha256": previous.sha256,
        "last_seq": previous.last_seq,
        "last_hash": previous.last_hash,
    }
    for name, value in expected.items():
        if link.get(name) != value:
            return bad(
                f"header's link to {previous.name} does not match it ({name}: header says "
                f"{link.get(name)!r}, found {value!r}); a segment was replaced, edited or truncated"
            )
    if report.first_prev != previous.last_hash:
        return bad(f"prev does not match the last entry of {previous.name}")
    if previous.last_seq is None or report.first_seq != previous.last_seq + 1:
        return bad(
            f"seq {report.first_seq} does not follow {previous.last_seq} from {previous.name}"
        )
    if report.start_key != previous.end_key:
        return bad(f"header key {report.start_key} is not the key in effect ({previous.end_key})")
    return None


def _expectation_problem(
    result: VerifyResult,
    last: SegmentReport | None,
    expected: str | None,
    checkpoint: Mapping[str, Any] | None,
    known: list[str],
    watched: tuple[str, str, int] | None,
    *,
    external: bool = True,
) -> Problem | None:
    first_name = f"segment-{1:08d}.jsonl"
    if expected is not None and expected not in result.keys:
        return Problem(
            first_name,
            1,
            0,
            f"journal is signed by key(s) {', '.join(result.keys)}, none of which is the enrolled "
            f"device key {expected} (re-signed or from another device)",
        )
    if checkpoint is None or last is None:
        return None
    why = checkpoint_problem(checkpoint)
    if why is not None:
        return Problem("checkpoint", 0, None, why)
    seq, head, when = int(checkpoint["seq"]), str(checkpoint["head"]), checkpoint.get("time")
    result.checkpoint_time = str(when) if when is not None else None
    device = checkpoint.get("device")
    if device is not None and result.device_fingerprint not in (None, device):
        return Problem(
            "checkpoint",
            0,
            None,
            f"checkpoint is from device {device}, this journal from {result.device_fingerprint}",
        )
    unknown_key = checkpoint["key"] not in known and Problem(
        "checkpoint",
        0,
        None,
        f"checkpoint signed by key {checkpoint['key']}, not in this journal's key chain",
    )
    where = Problem(last.name, last.lines, last.last_seq, "")
    first = result.first_seq if result.first_seq is not None else 0
    if seq > result.head_seq and not external:
        # A bundle's own checkpoint: its signed claims already proved the content; the
        # journal simply grew past what was exported.
        result.checkpoint_note = (
            f"bundle ends at seq {result.head_seq}; the journal was at seq {seq} at export"
        )
        return None
    if seq > result.head_seq:
        return _past_head(result, where, seq, head, when) or unknown_key or None
    if seq < first - 1:
        gap = Gap(seq + 1, first - 1, result.checkpoint_time, result.first_time, device)
        result.gaps.append(gap)
        return Problem("bundle", 0, first, f"starts after the checkpoint of {when}: {gap}")
    if seq == first - 1:
        matches = result.first_prev == head
        segment, line = f"segment-{1:08d}.jsonl", 1
    else:
        matches = watched is not None and watched[0] == head
        segment, line = (watched[1], watched[2]) if watched else (where.segment, where.line)
    if not matches:
        return Problem(
            segment,
            line,
            seq,
            f"entry {seq} differs from the checkpoint of {when}: the journal "
            "was rewritten at or before this entry (e.g. truncated, then appended to)",
        )
    if unknown_key:
        return unknown_key
    result.checkpoint_seq = seq
    result.checkpoint_note = (
        f"checkpoint seq {seq} of {when} matches"
        if seq >= first
        else f"checkpoint seq {seq} of {when} is the entry just before this bundle; it continues it"
    )
    return None


def _past_head(
    result: VerifyResult, where: Problem, seq: int, head: str, when: Any
) -> Problem | None:
    """A checkpoint past the last entry held: truncation, unless a signed ``--until`` end."""
    exported = result.exported_seq
    if result.until is not None and exported is not None and exported >= seq:
        if exported == seq and head != result.checkpoint_head_of_export:
            return Problem(
                "checkpoint.json",
                0,
                seq,
                f"the bundle's checkpoint and the checkpoint of {when} name different entries "
                f"at seq {seq}: the journal was rewritten",
            )
        result.checkpoint_note = (
            f"checkpoint seq {seq} of {when} lies past this bundle, which ends at seq "
            f"{result.head_seq} (exported --until {result.until}); its signed checkpoint "
            f"records the journal at seq {exported} then, so nothing was cut"
        )
        return None
    recorded = f" (its export recorded seq {exported})" if exported is not None else ""
    return Problem(
        where.segment,
        where.line,
        where.seq,
        f"journal ends at seq {result.head_seq}{recorded} but the checkpoint of {when} "
        f"records seq {seq}: entries were removed or an older copy was restored",
    )


def _bundle_problem(
    segments: list[tuple[int, Path]], result: VerifyResult, claims: Mapping[str, Any] | None
) -> Problem | None:
    """A bundle must hold exactly the segments its signed checkpoint lists."""
    if claims is None:
        return None
    import hashlib

    present = [
        {"name": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for _, p in segments
    ]
    listed = list(claims.get("segments", []))
    for have, want in zip(present, listed, strict=False):
        if have != want:
            return Problem(
                have["name"],
                1,
                None,
                f"segment differs from the bundle's signed checkpoint (expected {want['name']})",
            )
    if len(present) != len(listed):
        return Problem(
            "bundle",
            0,
            None,
            f"bundle holds {len(present)} segments, its signed checkpoint lists {len(listed)}",
        )
    if claims.get("last_seq") != result.head_seq or claims.get("last_hash") != result.head_hash:
        return Problem(
            "bundle", 0, result.head_seq, "bundle's last entry differs from its signed checkpoint"
        )
    return None


def _reports(
    segments: list[tuple[int, Path]],
    watch: int | None,
    progress: Progress | None,
    workers: int | None,
) -> Iterator[SegmentReport]:
    sizes = [p.stat().st_size for _, p in segments]
    total, done = sum(sizes), 0
    count = min(workers or os.cpu_count() or 1, len(segments))
    if count <= 1 or total < PARALLEL_MIN_BYTES:
        for (index, path), size in zip(segments, sizes, strict=True):
            report = _settle(check_segment(path, index, watch), path, index, watch)
            done += size
            if progress:
                progress(done, total)
            yield report
            if report.problem is not None:
                return
        return
    # fork is cheapest and safe while this process runs no other thread (the CLI); a
    # threaded host (the language server) gets fresh interpreters instead.
    method = "fork" if threading.active_count() == 1 and os.name == "posix" else "spawn"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
        futures = [pool.submit(check_segment, path, index, watch) for index, path in segments]
        try:
            for (index, path), future, size in zip(segments, futures, sizes, strict=True):
                report = _settle(future.result(), path, index, watch)
                done += size
                if progress:
                    progress(done, total)
                yield report
                if report.problem is not None:
                    return
        finally:
            for future in futures:
                future.cancel()


def _settle(report: SegmentReport, path: Path, index: int, watch: int | None) -> SegmentReport:
    """Re-check a torn-looking tail while holding off writers (a live journal's append).

    A running writer appends with one ``write`` under the journal lock; reading the
    segment under the same lock (shared) shows whether the tail was torn or in flight.
    """
    lock = path.parent / LOCK_NAME
    if report.problem is None or not report.problem.what.startswith("torn") or fcntl is None:
        return report
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return report
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        return check_segment(path, index, watch)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
