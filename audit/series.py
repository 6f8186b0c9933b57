"""Verifying a series of export bundles from one device: each alone, then as one history.

Collections happen again and again (``export --since`` the last one), so continuity is a
property of the series, not of any one bundle. After each bundle verifies on its own,
the bundles are ordered by their first seq and stitched:

- the next bundle starts right after the previous one ends: its first ``prev`` must be
  the previous bundle's last hash;
- they overlap: both must hold the same entry at the last seq they share;
- it starts later: a :class:`~onbox.audit.verify.Gap` (seq range + the export that fills it).

Every bundle's own signed checkpoint (and an extra one, if given) then speaks for the
journal as it was at that moment: a later checkpoint must record at least as many
entries (else the journal was truncated or rolled back), and any bundle holding the
checkpoint's seq must hold the same entry there (else it was rewritten).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onbox.audit.bundle import load_checkpoint
from onbox.audit.check import Problem
from onbox.audit.checkpoint import checkpoint_problem
from onbox.audit.stats import iter_entries
from onbox.audit.verify import Gap, VerifyResult, verify_journal


@dataclass
class SeriesResult:
    """The outcome of :func:`verify_series`."""

    ok: bool
    bundles: list[tuple[Path, VerifyResult]] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    problems: list[tuple[str, Problem]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    device: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (``onbox journal verify B1 B2 … --json``)."""
        return {
            "ok": self.ok,
            "device": self.device,
            "bundles": [{"path": str(p), **r.to_json()} for p, r in self.bundles],
            "gaps": [g.to_json() for g in self.gaps],
            "problems": [{"where": w, **p.to_json()} for w, p in self.problems],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class _Anchor:
    """A signed checkpoint: the journal held ``seq`` entries ending in ``head`` at ``time``."""

    source: str
    seq: int
    head: str
    time: str


def verify_series(
    paths: list[Path],
    *,
    expected_fingerprint: str | None = None,
    checkpoint: Mapping[str, Any] | None = None,
    workers: int | None = None,
) -> SeriesResult:
    """Verify each bundle, then the series as one history (see the module docstring)."""
    result = SeriesResult(ok=False)
    for path in paths:
        verified = verify_journal(path, expected_fingerprint=expected_fingerprint, workers=workers)
        result.bundles.append((path, verified))
        if verified.first_error is not None:
            result.problems.append((str(path), verified.first_error))
    devices = {r.device_fingerprint for _, r in result.bundles}
    if len(devices) > 1:
        result.problems.append(
            ("series", Problem("bundle", 0, None, f"bundles from several devices: {devices}"))
        )
    result.device = next(iter(devices), None)
    if result.problems:
        return result
    ordered = sorted(result.bundles, key=lambda b: (b[1].first_seq or 0, b[1].head_seq))
    first = ordered[0][1]
    if first.first_seq:
        result.notes.append(f"entries before seq {first.first_seq} are in none of these bundles")
    for earlier, later in itertools.pairwise(ordered):
        _stitch(result, earlier, later)
    anchors = [_own_anchor(p) for p, _ in ordered]
    if checkpoint is not None:
        why = checkpoint_problem(checkpoint)
        if why is not None:
            result.problems.append(("checkpoint", Problem("checkpoint", 0, None, why)))
        else:
            anchors.append(
                _Anchor(
                    "checkpoint",
                    int(checkpoint["seq"]),
                    str(checkpoint["head"]),
                    str(checkpoint.get("time")),
                )
            )
            _gap_before(result, checkpoint, ordered)
    _check_anchors(result, [a for a in anchors if a is not None], ordered)
    result.ok = not result.problems and not result.gaps
    return result


def _stitch(
    result: SeriesResult, a: tuple[Path, VerifyResult], b: tuple[Path, VerifyResult]
) -> None:
    (a_path, ar), (b_path, br) = a, b
    b_first = br.first_seq or 0
    if b_first > ar.head_seq + 1:
        result.gaps.append(
            Gap(ar.head_seq + 1, b_first - 1, ar.head_time, br.first_time, result.device)
        )
    elif b_first == ar.head_seq + 1:
        if br.first_prev != ar.head_hash:
            result.problems.append(
                (
                    str(b_path),
                    Problem(
                        "bundle",
                        0,
                        b_first,
                        f"first entry does not link to the last entry of {a_path.name} "
                        "(the journal was rewritten between the two exports)",
                    ),
                )
            )
    else:
        shared = min(ar.head_seq, br.head_seq)
        if _hash_at(a_path, shared) != _hash_at(b_path, shared):
            result.problems.append(
                (
                    str(b_path),
                    Problem(
                        "bundle",
                        0,
                        shared,
                        f"entry {shared} differs from {a_path.name}'s: the journal was "
                        "rewritten between the two exports",
                    ),
                )
            )


def _gap_before(
    result: SeriesResult,
    checkpoint: Mapping[str, Any],
    ordered: list[tuple[Path, VerifyResult]],
) -> None:
    seq, first = int(checkpoint["seq"]), ordered[0][1]
    if first.first_seq is not None and seq < first.first_seq - 1:
        result.gaps.insert(
            0,
            Gap(
                seq + 1,
                first.first_seq - 1,
                str(checkpoint.get("time")),
                first.first_time,
                result.device,
            ),
        )


def _own_anchor(path: Path) -> _Anchor | None:
    try:
        own = load_checkpoint(path)
        return _Anchor(path.name, int(own["seq"]), str(own["head"]), str(own["time"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # verify_journal already reported it


def _check_anchors(
    result: SeriesResult, anchors: list[_Anchor], ordered: list[tuple[Path, VerifyResult]]
) -> None:
    anchors.sort(key=lambda a: a.time)
    for i, earlier in enumerate(anchors):
        for later in anchors[i + 1 :]:
            if later.seq < earlier.seq:
                result.problems.append(
                    (
                        later.source,
                        Problem(
                            "checkpoint",
                            0,
                            later.seq,
                            f"the journal at {later.time} ended at seq {later.seq}, but at "
                            f"{earlier.time} ({earlier.source}) it had reached seq {earlier.seq}: "
                            "entries were removed or an older copy was restored",
                        ),
                    )
                )
        for path, verified in ordered:
            first = verified.first_seq or 0
            if first <= earlier.seq <= verified.head_seq:
                if _hash_at(path, earlier.seq) != earlier.head:
                    result.problems.append(
                        (
                            str(path),
                            Problem(
                                "bundle",
                                0,
                                earlier.seq,
                                f"entry {earlier.seq} differs from the checkpoint of "
                                f"{earlier.time} ({earlier.source}): the journal was rewritten",
                            ),
                        )
                    )


def _hash_at(path: Path, seq: int) -> str | None:
    for entry in iter_entries(path):
        if entry.get("seq") == seq:
            value = entry.get("hash")
            return str(value) if value is not None else None
    return None


def describe(result: SeriesResult) -> list[str]:
    """Human lines for the CLI."""
    lines = []
    for path, verified in result.bundles:
        span = f"seq {verified.first_seq}–{verified.head_seq}"
        until = f", --until {verified.until}" if verified.until else ""
        state = "ok" if verified.ok else f"FAILED {verified.first_error}"
        lines.append(f"{path}: {span}{until}: {state}")
    lines.extend(f"note: {n}" for n in result.notes)
    lines.extend(str(g) for g in result.gaps)
    lines.extend(f"FAILED {w}: {p}" for w, p in result.problems)
    return lines


def dumps(result: SeriesResult) -> str:
    """``--json`` output."""
    return json.dumps(result.to_json(), indent=2)
