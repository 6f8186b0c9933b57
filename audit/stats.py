"""Reading the journal for people: entries in order, and the numbers ``onbox journal stats`` shows.

These readers do not verify; run :func:`onbox.audit.verify.verify_journal` for that.
Body fields they look at (see ``docs/journal.md``): ``destination`` (an object with
``name``/``kind``, or a name), ``label``, ``outcome``, ``completion_id``, ``on_box``.
"""

from __future__ import annotations

import json
import logging
import tarfile
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from onbox.audit.entry import HEADER_KIND, parse_time
from onbox.audit.segments import list_segments

logger = logging.getLogger(__name__)

ON_BOX_KINDS = frozenset({"llama-cpp", "on-box", "onbox", "local"})


def _segment_lines(source: Path) -> Iterator[tuple[str, bytes]]:
    """``(segment name, line)`` from a journal directory or an export bundle (tar)."""
    if source.is_file():
        with tarfile.open(source, "r") as tar:
            members = sorted(
                (m for m in tar.getmembers() if m.isfile() and m.name.startswith("segments/")),
                key=lambda m: m.name,
            )
            for member in members:
                handle = tar.extractfile(member)
                if handle is not None:
                    for raw in handle:
                        yield member.name[len("segments/") :], raw
        return
    for _, path in list_segments(source):
        with open(path, "rb") as handle:
            for raw in handle:
                yield path.name, raw


def iter_entries(directory: Path, *, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Every readable entry (segment headers included), oldest first; skips unreadable lines.

    ``directory`` may also be an export bundle.
    """
    for name, raw in _segment_lines(directory):
        try:
            entry = json.loads(raw)
        except ValueError:
            logger.warning("skipping an unreadable line in %s", name)
            continue
        if since is not None and parse_time(entry["time"]) < since:
            continue
        yield entry


def destination_of(body: dict[str, Any]) -> tuple[str, str]:
    """``(name, kind)`` of the destination a body names."""
    dest = body.get("destination")
    if isinstance(dest, dict):
        return str(dest.get("name", "?")), str(dest.get("kind", "?"))
    return (str(dest), "?") if dest is not None else ("?", "?")


def _on_box(body: dict[str, Any]) -> bool:
    if isinstance(body.get("on_box"), bool):
        return bool(body["on_box"])
    name, kind = destination_of(body)
    return kind in ON_BOX_KINDS or name in ON_BOX_KINDS


def journal_stats(path: Path, *, since: datetime | None = None) -> dict[str, Any]:
    """Egress by destination, label and day; completions served on-box; acceptance rate.

    ``path`` is a journal directory or an export bundle; entries before ``since`` are skipped.
    """
    kinds: Counter[str] = Counter()
    egress_dest: Counter[str] = Counter()
    egress_label: Counter[str] = Counter()
    egress_day: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    bytes_sent = 0
    completions = on_box = 0
    served: set[str] = set()
    accepted: set[str] = set()
    for entry in iter_entries(path, since=since):
        kind, body = entry.get("kind", "?"), entry.get("body") or {}
        if kind == HEADER_KIND:
            continue
        kinds[kind] += 1
        if kind == "egress":
            egress_dest[destination_of(body)[0]] += 1
            egress_label[str(body.get("label", "?"))] += 1
            egress_day[str(entry["time"])[:10]] += 1
            sent = body.get("bytes_sent", 0)
            bytes_sent += sent if isinstance(sent, int) else 0
        elif kind == "completion":
            completions += 1
            outcome = str(body.get("outcome", "?"))
            outcomes[outcome] += 1
            if outcome == "served":
                if _on_box(body):
                    on_box += 1
                if body.get("completion_id") is not None:
                    served.add(str(body["completion_id"]))
        elif kind == "acceptance" and body.get("completion_id") is not None:
            accepted.add(str(body["completion_id"]))
    rate = len(accepted & served) / len(served) if served else None
    return {
        "since": since.isoformat() if since else None,
        "entries": sum(kinds.values()),
        "by_kind": dict(sorted(kinds.items())),
        "egress": {
            "total": sum(egress_dest.values()),
            "bytes_sent": bytes_sent,
            "by_destination": dict(sorted(egress_dest.items())),
            "by_label": dict(sorted(egress_label.items())),
            "by_day": dict(sorted(egress_day.items())),
        },
        "completions": {
            "total": completions,
            "served_on_box": on_box,
            "by_outcome": dict(sorted(outcomes.items())),
        },
        "acceptance": {"served": len(served), "accepted": len(accepted & served), "rate": rate},
    }
