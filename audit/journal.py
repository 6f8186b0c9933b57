"""The writer: :class:`Journal` appends signed, hash-chained entries to segment files.

Every append takes an inter-process lock (``fcntl.flock`` on ``.lock``; :mod:`filelock`
where ``fcntl`` is missing), checks whether another process appended or rotated since
(file size and the next segment's existence), re-reads the tail if so, and writes the
entry with one ``write`` on an ``O_APPEND`` descriptor. The lock serialises writers, so
two editor windows never interleave or fork the chain.

Durability: ``append(..., durable=True)`` fsyncs before returning (egress); other entries
are group-committed by a background thread every ``commit_interval`` seconds and on
:meth:`Journal.close`. Either way the bytes are in the file when ``append`` returns, so
a killed process loses nothing; a power cut can lose only non-durable entries.

Crash recovery: bytes after the last newline of the newest segment (a torn write) are
cut at open (or by the next writer that finds them), saved beside the journal as
``recovered-*.bin``, and a ``recovered`` entry records segment, offset, length and SHA-256.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from onbox.audit.entry import (
    FORMAT_VERSION,
    GENESIS_PREV,
    HEADER_KIND,
    Receipt,
    entry_hash,
    format_time,
    seal,
)
from onbox.audit.errors import JournalCorrupt, JournalError, JournalKeyError
from onbox.audit.keys import DeviceKey, KeyStore, fsync_dir
from onbox.audit.segments import (
    LOCK_NAME,
    ProcessLock,
    file_sha256,
    header_day,
    list_segments,
    read_tail,
    segment_name,
    unwritable,
)

logger = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024
DEFAULT_COMMIT_INTERVAL = 0.2


class Journal:
    """An open journal directory; see the module docstring. Use :func:`open_journal`."""

    def __init__(
        self,
        directory: Path,
        keys: KeyStore,
        *,
        segment_max_bytes: int = DEFAULT_SEGMENT_BYTES,
        commit_interval: float = DEFAULT_COMMIT_INTERVAL,
        forward_secure: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.path = directory
        self._keys = keys
        self._segment_max = segment_max_bytes
        self._interval = commit_interval
        self._forward_secure = forward_secure
        self._clock = clock or (lambda: datetime.now(UTC))
        self._mutex = threading.RLock()
        self._fd: int | None = None
        self._seg_index = 0
        self._next_segment = ""
        self._seg_day = ""
        self._size = 0
        self._seq = -1
        self._head = GENESIS_PREV
        self._tail_key = ""
        self._dirty = False
        self._closed = False
        self._stop = threading.Event()
        self._committer: threading.Thread | None = None
        self._pending: list[tuple[str, dict[str, Any]]] = []
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock = ProcessLock(directory / LOCK_NAME)
        except OSError as exc:
            raise unwritable(directory, exc) from exc
        self._key, self.device_fingerprint, created = keys.load_or_create()
        with self._locked():
            if created:
                self._pending.append(
                    (
                        "key-created",
                        {
                            "device": self.device_fingerprint,
                            "fingerprint": self._key.fingerprint,
                            "public_key": self._key.public_b64,
                        },
                    )
                )
            self._flush_pending()
            self._sync_durable()
            # Under the journal lock no rotation is half-done, so any other private key
            # is a leftover that forward security requires gone.
            self._keys.prune(keep=self._key.fingerprint)

    # ------------------------------------------------------------------ public API

    @property
    def key_fingerprint(self) -> str:
        """Fingerprint of the key that signs new entries."""
        return str(self._key.fingerprint)

    @property
    def public_key_b64(self) -> str:
        """Raw base64 public key that signs new entries."""
        return str(self._key.public_b64)

    def append(self, kind: str, body: Mapping[str, Any], *, durable: bool = False) -> Receipt:
        """Sign and append one entry; fsynced before returning when ``durable``.

        ``body`` must hold no raw prompt or secret: callers pass hashes, sizes and labels.
        Raises :class:`JournalError` (usually :class:`JournalUnwritable`) when the entry
        could not be written; the caller must then not send anything off the machine.
        """
        if kind == HEADER_KIND:
            raise ValueError(f"{HEADER_KIND!r} entries are written by the journal itself")
        with self._locked():
            self._flush_pending()
            receipt = self._write(kind, dict(body))
            if durable:
                self._sync_durable()
            else:
                self._dirty = True
                self._ensure_committer()
        return receipt

    def rotate_key(self, reason: str = "manual") -> Receipt:
        """Replace the device signing key; the ``key-rotated`` entry is signed by both keys.

        The old private key is deleted once the entry is durable.
        """
        with self._locked():
            self._flush_pending()
            receipt = self._rotate_locked(reason)
            self._sync_durable()
        return receipt

    def head(self) -> Receipt:
        """The newest entry, as seen after catching up with other writers."""
        with self._locked():
            return Receipt(self._seq, self._head)

    def checkpoint(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A signed statement of the current head: seq, hash, entry count, device, time."""
        from onbox.audit.checkpoint import sign_checkpoint

        with self._locked():
            self._sync_durable()
            signed: dict[str, Any] = sign_checkpoint(
                self._key,
                device=self.device_fingerprint,
                seq=self._seq,
                head=self._head,
                time=format_time(self._clock()),
                extra=extra,
            )
            return signed

    def flush(self) -> None:
        """Fsync everything appended so far."""
        with self._mutex:
            if self._fd is not None and self._dirty:
                self._sync_durable()

    def close(self) -> None:
        """Fsync pending entries, stop the group-commit thread and release files."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
        if self._committer is not None:
            self._committer.join()
        with self._mutex:
            try:
                if self._fd is not None and self._dirty:
                    self._sync_durable()
            except JournalError as exc:
                logger.warning("journal close: %s", exc)
            finally:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                self._lock.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ locking & tail

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex:
            if self._closed:
                raise JournalError(f"the journal at {self.path} is closed; open it again")
            self._lock.acquire()
            try:
                self._sync_tail()
                yield
            finally:
                self._lock.release()

    def _sync_tail(self) -> None:
        """Catch up with whatever other processes wrote since our last append."""
        if self._fd is None or os.path.exists(self._next_segment):
            self._open_latest()
            return
        size = os.fstat(self._fd).st_size
        if size < self._size:
            # Entries this process saw are gone: someone cut the segment while it was open.
            # Continuing is right (the router needs a journal), and the cut goes on record.
            logger.warning(
                "journal segment %s shrank from %d to %d bytes", self._seg_index, self._size, size
            )
            self._pending.append(
                (
                    "recovered",
                    {
                        "segment": segment_name(self._seg_index),
                        "shrank_from_bytes": self._size,
                        "to_bytes": size,
                        "last_seen_seq": self._seq,
                        "last_seen_hash": self._head,
                    },
                )
            )
            self._read_tail_from(0, size)
        elif size > self._size:
            self._read_tail_from(self._size, size)

    def _open_latest(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        segments = list_segments(self.path)
        while segments:
            index, path = segments[-1]
            try:
                self._fd = os.open(path, os.O_RDWR | os.O_APPEND)
            except OSError as exc:
                raise unwritable(path, exc) from exc
            self._seg_index = index
            self._next_segment = str(self.path / segment_name(index + 1))
            self._size = 0
            self._read_tail_from(0, os.fstat(self._fd).st_size)
            if self._size > 0:
                self._seg_day = header_day(self._fd)
                return
            # An empty newest segment (its header was torn away): drop it, use the one before.
            os.close(self._fd)
            self._fd = None
            path.unlink()
            segments.pop()
        self._seq, self._head, self._tail_key = -1, GENESIS_PREV, self._key.fingerprint
        self._new_segment(1, previous=None)

    def _read_tail_from(self, start: int, size: int) -> None:
        assert self._fd is not None
        tail = read_tail(self._fd, start, size)
        if tail.complete_end < size:
            self._cut_torn(tail.complete_end, size)
        if tail.last_line is not None:
            self._adopt_line(tail.last_line)
        self._size = tail.complete_end

    def _adopt_line(self, line: bytes) -> None:
        segment = segment_name(self._seg_index)
        try:
            obj = json.loads(line)
            computed = entry_hash(obj)
        except (ValueError, KeyError, TypeError) as exc:
            raise JournalCorrupt(
                f"the last entry of {self.path / segment} is unreadable ({exc}); run "
                "`onbox journal verify`, then move the journal aside to start a new one"
            ) from exc
        if computed != obj.get("hash"):
            raise JournalCorrupt(
                f"the last entry of {self.path / segment} (seq {obj.get('seq')}) does not match "
                "its hash; run `onbox journal verify` and keep the journal as evidence"
            )
        self._seq, self._head, self._tail_key = int(obj["seq"]), computed, str(obj["key"])
        if self._tail_key != self._key.fingerprint:
            self._reload_key(self._tail_key)

    def _reload_key(self, fingerprint: str) -> None:
        """Another process rotated the key (or a rotation was cut short): follow it."""
        try:
            key = self._keys.load(fingerprint)
        except JournalKeyError as exc:
            raise JournalKeyError(
                f"the journal at {self.path} is signed by key {fingerprint}, but this device's "
                f"key is {self._key.fingerprint} and the journal's key is not available. "
                "Move the journal directory aside to start a new journal."
            ) from exc
        # The journal moved on to this key (another process rotated, or a rotation was cut
        # short after its entry was written): the previous private key must not survive.
        self._keys.make_current(key, delete_previous=self._key.fingerprint)
        self._key = key

    def _cut_torn(self, offset: int, size: int) -> None:
        assert self._fd is not None
        segment = segment_name(self._seg_index)
        torn = os.pread(self._fd, size - offset, offset)
        digest = hashlib.sha256(torn).hexdigest()
        saved = f"recovered-{self._seg_index:08d}-{offset}-{digest[:12]}.bin"
        logger.warning("journal: cutting %d torn bytes at %s:%d", len(torn), segment, offset)
        try:
            (self.path / saved).write_bytes(torn)
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)
        except OSError as exc:
            raise unwritable(self.path / segment, exc) from exc
        self._pending.append(
            (
                "recovered",
                {
                    "segment": segment,
                    "offset": offset,
                    "cut_bytes": len(torn),
                    "cut_sha256": digest,
                    "saved_as": saved,
                },
            )
        )

    # ------------------------------------------------------------------ writing

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        while self._pending:
            kind, body = self._pending.pop(0)
            if kind == "recovered":
                body["last_valid_seq"] = self._seq
            self._write(kind, body)
        self._sync_durable()

    def _write(
        self,
        kind: str,
        body: dict[str, Any],
        *,
        cosigner: DeviceKey | None = None,
        may_rotate: bool = True,
    ) -> Receipt:
        stamp = format_time(self._clock())
        day = stamp[:10]
        if may_rotate and (self._size >= self._segment_max or day > self._seg_day):
            self._rotate_segment(day)
        line, digest = seal(
            seq=self._seq + 1,
            time=stamp,
            kind=kind,
            body=body,
            prev=self._head,
            key=self._key,
            cosigner=cosigner,
        )
        self._write_line(line)
        self._seq += 1
        self._head = digest
        return Receipt(self._seq, digest)

    def _write_line(self, line: bytes) -> None:
        assert self._fd is not None
        path = self.path / segment_name(self._seg_index)
        try:
            written = os.write(self._fd, line)
        except OSError as exc:
            raise unwritable(path, exc) from exc
        if written != len(line):
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise unwritable(path, OSError(errno.ENOSPC, "short write"))
        self._size += written

    def _sync_durable(self) -> None:
        if self._fd is None:
            return
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise unwritable(self.path / segment_name(self._seg_index), exc) from exc
        self._dirty = False

    def _rotate_segment(self, day: str) -> None:
        if self._forward_secure and self._fd is not None:
            self._rotate_locked("epoch")
        previous = None
        if self._fd is not None:
            self._sync_durable()
            path = self.path / segment_name(self._seg_index)
            previous = {
                "name": path.name,
                "bytes": self._size,
                "sha256": file_sha256(self._fd, self._size),
                "last_seq": self._seq,
                "last_hash": self._head,
            }
            os.close(self._fd)
            self._fd = None
        self._new_segment(self._seg_index + 1, previous=previous, day=day)

    def _new_segment(self, index: int, *, previous: dict[str, Any] | None, day: str = "") -> None:
        path = self.path / segment_name(index)
        now = self._clock()
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise unwritable(path, exc) from exc
        self._seg_index, self._size = index, 0
        self._next_segment = str(self.path / segment_name(index + 1))
        self._seg_day = day or now.astimezone(UTC).strftime("%Y-%m-%d")
        header = {
            "format": FORMAT_VERSION,
            "segment": index,
            "day": self._seg_day,
            "device": self.device_fingerprint,
            "public_key": self._key.public_b64,
            "previous": previous,
        }
        line, digest = seal(
            seq=self._seq + 1,
            time=format_time(now),
            kind=HEADER_KIND,
            body=header,
            prev=self._head,
            key=self._key,
        )
        self._write_line(line)
        self._seq += 1
        self._head = digest
        self._sync_durable()
        fsync_dir(self.path)

    def _rotate_locked(self, reason: str) -> Receipt:
        old = self._key
        new = DeviceKey.generate()
        self._keys.write_key(new)
        self._key = new
        try:
            receipt = self._write(
                "key-rotated",
                {
                    "old_key": old.fingerprint,
                    "new_key": new.fingerprint,
                    "public_key": new.public_b64,
                    "reason": reason,
                },
                cosigner=old,
                may_rotate=False,
            )
            self._sync_durable()
        except JournalError:
            self._key = old
            self._keys.delete_private(new.fingerprint)
            raise
        self._keys.make_current(new, delete_previous=old.fingerprint)
        self._tail_key = new.fingerprint
        logger.info("journal key rotated %s -> %s (%s)", old.fingerprint, new.fingerprint, reason)
        return receipt

    # ------------------------------------------------------------------ group commit

    def _ensure_committer(self) -> None:
        if self._committer is None and not self._closed:
            self._committer = threading.Thread(
                target=self._commit_loop, name="onbox-journal-commit", daemon=True
            )
            self._committer.start()

    def _commit_loop(self) -> None:
        while not self._stop.wait(self._interval):
            with self._mutex:
                if not self._dirty or self._fd is None:
                    continue
                fd = os.dup(self._fd)
                self._dirty = False
            try:
                os.fsync(fd)
            except OSError as exc:
                logger.error("journal group commit failed: %s", exc)
                self._dirty = True
            finally:
                os.close(fd)
