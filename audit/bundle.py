"""Export bundles: one tar file a security team can verify on another machine.

Layout (an uncompressed tar)::

    manifest.json            {"type": "onbox-journal-bundle", "v": 1, "device", "first_segment",
                              "segments": [{"name", "bytes", "sha256"}], "since", "until"}
    keys.json                {"device": <root fingerprint>, "history": [<entry lines>]}
    checkpoint.json          signed checkpoint of the journal head at export time, with
                             "bundle": {"segments": [{"name", "sha256"}], "last_seq", "last_hash"}
    segments/segment-NNNNNNNN.jsonl

``keys.json`` ``history`` holds the first segment's header and every ``key-rotated`` entry
of the whole journal, verbatim, so the chain from the enrolled device key to the key that
signed the checkpoint can be checked even when the bundle holds only some segments.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from onbox.audit.check import parse_entry
from onbox.audit.entry import HEADER_KIND, parse_time, signing_message
from onbox.audit.journal import Journal
from onbox.audit.keys import fingerprint_of, public_key_from_b64, verify_signature
from onbox.audit.segments import list_segments

logger = logging.getLogger(__name__)

BUNDLE_TYPE = "onbox-journal-bundle"


@dataclass
class BundleContents:
    """An unpacked bundle, ready for :func:`onbox.audit.verify.verify_journal`."""

    directory: Path
    checkpoint: dict[str, Any] | None
    first_segment: int
    prior_keys: list[str]
    manifest: dict[str, Any]


def export_bundle(
    journal: Journal,
    out: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Write a bundle of the segments overlapping ``[since, until]``; returns the manifest.

    The bundle's checkpoint signs what it holds (segments, last seq and hash) and, with
    ``until``, that it ends early on purpose; verifiers accept a later checkpoint past
    its end only then. Without ``until`` the bundle ends at the journal head.
    """
    for _attempt in range(5):
        journal.flush()
        chosen = _choose(list_segments(journal.path), since, until)
        last = json.loads(chosen[-1][2].rstrip(b"\n").rsplit(b"\n", 1)[-1])
        claims = {
            "segments": [{"name": p.name, "sha256": _sha256(d)} for _, p, d in chosen],
            "last_seq": last["seq"],
            "last_hash": last["hash"],
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        }
        checkpoint = journal.checkpoint({"bundle": claims})
        # Another process may append between reading the segments and signing; a bundle
        # without --until must end at the head its checkpoint records.
        if until is not None or checkpoint["seq"] == last["seq"]:
            break
    else:
        raise ValueError("the journal kept growing while exporting; try again")
    listing = [
        {"name": path.name, "bytes": len(data), "sha256": _sha256(data)} for _, path, data in chosen
    ]
    segments = list_segments(journal.path)
    manifest = {
        "type": BUNDLE_TYPE,
        "v": 1,
        "device": journal.device_fingerprint,
        "first_segment": chosen[0][0],
        "segments": listing,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
    }
    keys = {"device": journal.device_fingerprint, "history": _key_history(segments)}
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w") as tar:
        _add(tar, "manifest.json", json.dumps(manifest, indent=2).encode())
        _add(tar, "keys.json", json.dumps(keys, indent=2).encode())
        _add(tar, "checkpoint.json", json.dumps(checkpoint, indent=2).encode())
        for _, path, data in chosen:
            _add(tar, f"segments/{path.name}", data)
    tmp.replace(out)
    return manifest


def _choose(
    segments: list[tuple[int, Path]], since: datetime | None, until: datetime | None
) -> list[tuple[int, Path, bytes]]:
    starts = [_header_time(path) for _, path in segments]
    chosen = []
    for i, (index, path) in enumerate(segments):
        begin = starts[i]
        end = starts[i + 1] if i + 1 < len(segments) else None
        if until is not None and begin is not None and begin > until:
            continue
        # A segment's last entries (a key rotation) share the next header's time.
        if since is not None and end is not None and end < since:
            continue
        chosen.append((index, path, path.read_bytes()))
    if not chosen:
        raise ValueError("no journal segment overlaps the requested time range")
    return chosen


def open_bundle(bundle: Path, into: Path) -> BundleContents:
    """Unpack ``bundle`` into ``into`` and check its key history; raises ValueError if malformed."""
    directory = into / "segments"
    directory.mkdir(parents=True)
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(bundle, "r") as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None:
                    members[member.name] = handle.read()
    except (tarfile.TarError, OSError) as exc:
        raise ValueError(f"{bundle} is not a readable journal bundle: {exc}") from exc
    try:
        manifest = json.loads(members["manifest.json"])
        keys = json.loads(members.get("keys.json", b"{}"))
        checkpoint = (
            json.loads(members["checkpoint.json"]) if "checkpoint.json" in members else None
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{bundle} lacks a valid manifest: {exc}") from exc
    if manifest.get("type") != BUNDLE_TYPE:
        raise ValueError(f"{bundle} is not an Onbox journal bundle")
    for name, data in members.items():
        if name.startswith("segments/") and "/" not in name[9:] and name.endswith(".jsonl"):
            (directory / name[9:]).write_bytes(data)
    present = list_segments(directory)
    if checkpoint is None:
        raise ValueError(f"{bundle} has no checkpoint.json; export it again")
    return BundleContents(
        directory=directory,
        checkpoint=checkpoint,
        first_segment=present[0][0] if present else 1,
        prior_keys=_verified_history(keys.get("history", [])),
        manifest=manifest,
    )


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint from a ``checkpoint.json`` file or from inside a bundle."""
    if tarfile.is_tarfile(path):
        with tarfile.open(path, "r") as tar:
            handle = tar.extractfile("checkpoint.json")
            if handle is None:
                raise ValueError(f"{path} holds no checkpoint.json")
            data: dict[str, Any] = json.loads(handle.read())
            return data
    loaded: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return loaded


def key_history_lines(directory: Path) -> list[str]:
    """The journal's first header and every ``key-rotated`` line, verbatim (uploads carry it)."""
    return _key_history(list_segments(directory))


def _key_history(segments: list[tuple[int, Path]]) -> list[str]:
    history: list[str] = []
    for number, (_, path) in enumerate(segments):
        with open(path, "rb") as handle:
            for i, line in enumerate(handle):
                if (number == 0 and i == 0) or b'"kind":"key-rotated"' in line:
                    history.append(line.rstrip(b"\n").decode("utf-8"))
    return history


def _verified_history(lines: list[str]) -> list[str]:
    """The key chain proven by the history lines (stops at the first line that fails)."""
    chain: list[str] = []
    public: Ed25519PublicKey | None = None
    for text in lines:
        entry, what = parse_entry(text.encode("utf-8"))
        if what is not None:
            logger.warning("bundle key history: %s", what)
            break
        message = signing_message(entry["hash"])
        body = entry["body"]
        try:
            new_public = public_key_from_b64(str(body.get("public_key")))
        except ValueError:
            break
        if fingerprint_of(_raw(new_public)) != entry["key"]:
            break
        if entry["kind"] == HEADER_KIND and not chain and entry["seq"] == 0:
            ok = verify_signature(new_public, entry["sig"], message)
        elif (
            entry["kind"] == "key-rotated"
            and public is not None
            and chain
            and body.get("old_key") == chain[-1]
        ):
            ok = verify_signature(new_public, entry["sig"], message) and verify_signature(
                public, str(entry.get("cosig", "")), message
            )
        else:
            ok = False
        if not ok:
            logger.warning(
                "bundle key history: entry %s does not extend the key chain", entry["seq"]
            )
            break
        chain.append(str(entry["key"]))
        public = new_public
    return chain


def _raw(public: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    raw: bytes = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw


def _header_time(path: Path) -> datetime | None:
    with open(path, "rb") as handle:
        first = handle.readline()
    try:
        moment: datetime = parse_time(json.loads(first)["time"])
        return moment
    except (ValueError, KeyError, TypeError):
        return None


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
