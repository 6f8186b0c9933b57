"""Reading the journal for people: entries in order, and the numbers ``onbox journal stats`` shows.

These readers do not verify; run :func:`onbox.audit.verify.verify_journal` for that.
Body fields they look at (see ``docs/journal.md``; camelCase as the server writes them,
snake_case accepted too): ``destination`` (an object with ``name``/``kind``, or a name
with ``kind`` beside it), ``label``, ``outcome``, ``bytes``, the completion id (``id`` in
``completion``, ``completionId`` in ``acceptance``) and an optional ``onBox`` flag.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import tarfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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


def iter_entries(
    directory: Path, *, since: datetime | None = None, with_device: bool = False
) -> Iterator[dict[str, Any]]:
    """Every readable entry (segment headers included), oldest first; skips unreadable lines.

    ``directory`` may also be an export bundle. ``with_device`` adds ``"device"`` (the
    device fingerprint from the segment's header) to each entry, for readers that mix
    journals; it is not part of the signed entry.
    """
    device: str | None = None
    for name, raw in _segment_lines(directory):
        try:
            entry = json.loads(raw)
        except ValueError:
            logger.warning("skipping an unreadable line in %s", name)
            continue
        if entry.get("kind") == HEADER_KIND and isinstance(entry.get("body"), dict):
            device = entry["body"].get("device", device)
        if since is not None and parse_time(entry["time"]) < since:
            continue
        if with_device:
            entry["device"] = device
        yield entry


def journal_device(path: Path) -> str | None:
    """The device fingerprint in the first segment header of a journal or bundle."""
    try:
        for entry in iter_entries(path):
            body = entry.get("body")
            return str(body.get("device")) if isinstance(body, dict) else None
    except (OSError, tarfile.TarError, KeyError):
        return None
    return None


@dataclass(frozen=True)
class EntryFilter:
    """Which entries a reader wants; an empty field matches everything.

    ``repos``/``paths`` match the entry's own ``repo``/``path`` or any context snippet's
    (egress); ``paths`` are exact paths or :mod:`fnmatch` globs. ``labels`` match ``label``
    (or ``to``/``from`` of ``label-changed``); ``destinations`` the destination name;
    ``users`` the ``actor``'s ``osUser`` or ``gitEmail``.
    """

    kinds: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    repos: frozenset[str] = frozenset()
    paths: tuple[str, ...] = ()
    labels: frozenset[str] = frozenset()
    destinations: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()  # the actor's OS user or git email

    def matches(self, entry: dict[str, Any]) -> bool:
        """Whether ``entry`` passes every filter."""
        body = entry.get("body") if isinstance(entry.get("body"), dict) else {}
        assert isinstance(body, dict)
        if self.kinds and entry.get("kind") not in self.kinds:
            return False
        if self.since is not None or self.until is not None:
            try:
                moment = parse_time(str(entry.get("time")))
            except ValueError:
                return False
            if (self.since and moment < self.since) or (self.until and moment > self.until):
                return False
        context = [c for c in body.get("context") or [] if isinstance(c, dict)]
        if self.repos and not ({body.get("repo")} | {c.get("repo") for c in context}) & self.repos:
            return False
        if self.paths:
            candidates = [
                str(x) for x in [body.get("path"), *(c.get("path") for c in context)] if x
            ]
            if not any(fnmatch.fnmatchcase(c, p) for c in candidates for p in self.paths):
                return False
        if self.labels and not {body.get("label"), body.get("to"), body.get("from")} & self.labels:
            return False
        actor = body.get("actor") if isinstance(body.get("actor"), dict) else {}
        assert isinstance(actor, dict)
        if self.users and not {actor.get("osUser"), actor.get("gitEmail")} & self.users:
            return False
        return not self.destinations or destination_of(body)[0] in self.destinations

    def apply(self, entries: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The entries that match, in order."""
        return (e for e in entries if self.matches(e))


def destination_of(body: dict[str, Any]) -> tuple[str, str]:
    """``(name, kind)`` of the destination a body names."""
    dest = body.get("destination")
    if isinstance(dest, dict):
        return str(dest.get("name", "?")), str(dest.get("kind", "?"))
    kind = body.get("kind", body.get("destinationKind", "?"))
    return (str(dest), str(kind)) if dest is not None else ("?", str(kind))


def _first(body: dict[str, Any], *names: str) -> Any:
    for name in names:
        if body.get(name) is not None:
            return body[name]
    return None


def _on_box(body: dict[str, Any]) -> bool:
    flag = _first(body, "onBox", "on_box")
    if isinstance(flag, bool):
        return flag
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
            sent = _first(body, "bytes", "bytesSent", "bytes_sent")
            bytes_sent += sent if isinstance(sent, int) and not isinstance(sent, bool) else 0
        elif kind == "completion":
            completions += 1
            outcome = str(body.get("outcome", "?"))
            outcomes[outcome] += 1
            if outcome == "served":
                if _on_box(body):
                    on_box += 1
                cid = _first(body, "id", "completionId", "completion_id")
                if cid is not None:
                    served.add(str(cid))
        elif kind == "acceptance":
            cid = _first(body, "completionId", "completion_id", "id")
            if cid is not None:
                accepted.add(str(cid))
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
