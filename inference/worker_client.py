"""The on-box destination as the language server sees it: a client of the model worker.

:class:`WorkerDestination` has the public surface of the in-process
:class:`~onbox.inference.local.LlamaCppDestination` (``load``, ``complete``, ``describe``,
the generation counters), but the model lives in a shared worker process
(:mod:`onbox.inference.worker`). This module never imports llama.cpp.

Supervision, on the client side (every client of a worker does the same, and the shared
profile memory makes the outcome the same whoever notices first):

1. The first client to find no worker starts one, under a file lock on the socket path so
   that racing clients end with one worker.
2. A worker that closes the connection without saying ``bye`` crashed. The pending request
   raises :class:`WorkerCrashed` (an :class:`~onbox.inference.errors.ModelError`: the
   pipeline answers empty), ``on_crash`` is called once with what happened and what Onbox
   does next, the crash is recorded against the worker's profile, and the next request
   starts a new worker after a backoff — which loads with the next, safer profile.
3. A generation that runs past ``deadline_seconds`` is a hang: the worker is killed
   (SIGKILL) and handled like a crash.
4. Once every profile has crashed the destination is unavailable:
   "on-box model unavailable: crashed 3 times; see onbox doctor".
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import itertools
import json
import logging
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from onbox.inference.destination import CancelToken, Completion, CompletionRequest, DestinationKind
from onbox.inference.errors import Cancelled, ModelError
from onbox.inference.fim import FAMILIES, FimFormat
from onbox.inference.local import ModelSettings
from onbox.inference.model import (
    check_model_file,
    default_model_path,
    hash_progress,
    model_display_name,
    sha256_file,
)
from onbox.inference.worker_profiles import ProfileMemory, unavailable_message
from onbox.inference.worker_protocol import (
    FrameReader,
    ProtocolError,
    completion_from_json,
    encode,
    peer_credentials,
    peer_refusal,
    request_to_json,
    runtime_dir,
    socket_path,
    worker_name,
)

logger = logging.getLogger(__name__)

#: Workers this process started, kept referenced for their exit status (and reaped).
_CHILDREN: list[subprocess.Popen[bytes]] = []

#: How long a new worker may take to open its socket.
START_TIMEOUT = 60.0
#: How long loading the model may take before it counts as a hang.
LOAD_TIMEOUT = 600.0
#: Backoff before restarting after the n-th crash (seconds): 0.25, 0.5, 1, … up to 30.
BACKOFF_BASE = 0.25
BACKOFF_MAX = 30.0
#: How often a waiting request looks at its cancel token.
POLL_SECONDS = 0.005

#: faulthandler's words for the fatal signals it reports in the worker's log.
_FAULTHANDLER_NAMES = {
    "Segmentation fault": "SIGSEGV",
    "Bus error": "SIGBUS",
    "Aborted": "SIGABRT",
    "Floating-point exception": "SIGFPE",
    "Illegal instruction": "SIGILL",
}


class WorkerCrashed(ModelError):
    """The model worker died or hung while serving this request; it restarts on the next."""


class _WorkerGone(Exception):
    """The connection closed; ``clean`` when the worker said ``bye`` first."""

    def __init__(self, clean: bool, cause: str = "") -> None:
        super().__init__(cause)
        self.clean = clean
        self.cause = cause


def signal_name(returncode: int) -> str:
    """``-11`` → ``SIGSEGV``; a positive code → ``exit status N``."""
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


def cause_from_log(text: str, pid: int) -> str | None:
    """The fatal signal faulthandler logged for worker ``pid``, if any."""
    start = text.rfind(f"worker[{pid}]")
    if start < 0:
        return None
    rest = text[start:]
    other = re.search(rf"worker\[(?!{pid}\])\d+\]", rest)  # the next worker's lines
    if other is not None:
        rest = rest[: other.start()]
    found = re.findall(r"Fatal Python error: ([A-Za-z -]+)", rest)
    return _FAULTHANDLER_NAMES.get(found[-1].strip()) if found else None


class WorkerDestination:
    """The on-box destination, served by the shared model worker."""

    kind: str = DestinationKind.LLAMA_CPP

    def __init__(
        self,
        settings: ModelSettings,
        *,
        name: str = "on-box",
        clearance: str = "restricted",
        on_crash: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.name = name
        self.clearance = clearance
        self.settings = settings
        #: Called (on the request's thread) once per crash or hang, with the report.
        self.on_crash = on_crash
        self.error: str | None = None
        self.model_path: Path | None = None
        self.model_sha256: str | None = None
        self.generations_started = 0
        self.last_prompt_tokens_evaluated = 0
        self.last_finish: str | None = None
        self.last_tokens_out = 0
        self.last_timings: dict[str, float] = {}
        self.worker_pid: int | None = None
        self.crashes = 0
        #: Profiles that hung in this process (profile -> cause): skipped by the workers it
        #: starts, but not remembered for the machine — a hang may be a loaded machine.
        self._hung: dict[str, str] = {}
        self._lock = threading.RLock()
        self._sock: socket.socket | None = None
        self._reader = FrameReader()
        self._pending: list[dict[str, Any]] = []
        self._hello: dict[str, Any] = {}
        self._info: dict[str, Any] = {}
        self._loaded = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._ids = itertools.count(1)
        self._restart_at = 0.0
        self._unavailable = False
        self._socket_path: Path | None = None

    # -- the surface the server uses -------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether a worker has the model loaded for us."""
        return self._loaded and self._sock is not None

    @property
    def model_name(self) -> str:
        """File name of the model (or of the configured path before loading)."""
        return model_display_name(self.model_path, self.settings.path)

    @property
    def fim_format(self) -> FimFormat | None:
        """The FIM layout the worker found in the model, or ``None``."""
        family = self._info.get("fim")
        return FAMILIES.get(family) if isinstance(family, str) else None

    @property
    def profile(self) -> dict[str, Any] | None:
        """The load profile of the current worker (name, extra buffer types, GPU layers, why)."""
        profile = self._hello.get("profile")
        return dict(profile) if isinstance(profile, dict) else None

    def build_info(self) -> dict[str, Any] | None:
        """llama.cpp's version and system info as the worker reported them (None before)."""
        build = self._hello.get("build")
        return dict(build) if isinstance(build, dict) else None

    def describe(self) -> dict[str, Any]:
        """Name, kind, model, its sha256, and which worker serves it (for the journal)."""
        profile = self.profile
        return {
            "name": self.name,
            "kind": self.kind,
            "endpoint": f"worker:{self._socket_path}" if self._socket_path else "worker",
            "model": self.model_name,
            "modelSha256": self.model_sha256,
            "fim": self._info.get("fim"),
            "workerPid": self.worker_pid,
            "profile": profile["name"] if profile else None,
        }

    def load(self, report: Callable[[str], None] | None = None) -> None:
        """Start (or join) the worker and have it load the model; raise :class:`ModelError`."""
        with self._lock:
            try:
                self._ensure_loaded(report or (lambda _msg: None), CancelToken())
            except WorkerCrashed:
                raise
            except ModelError as exc:
                self.error = str(exc)
                raise

    def complete(self, request: CompletionRequest, cancel: CancelToken) -> Completion:
        """Generate in the worker; stops within one token once ``cancel`` is set."""
        if cancel.cancelled:
            raise Cancelled(cancel.reason)
        message = {
            "op": "complete",
            "request": request_to_json(request),
            "prompt": {
                "prefix_tokens": self.settings.prefix_tokens,
                "suffix_tokens": self.settings.suffix_tokens,
            },
        }
        with self._lock:
            for attempt in range(2):
                self._ensure_loaded(lambda _msg: None, cancel)
                try:
                    reply = self._call(message, cancel, self.settings.deadline_seconds)
                    break
                except _WorkerGone as gone:
                    if gone.clean and attempt == 0:  # it was exiting idle: start a new one
                        self._disconnect()
                        continue
                    raise WorkerCrashed(self._crashed(gone, "generating")) from None
        if reply.get("started"):
            self.generations_started += 1
            self.last_prompt_tokens_evaluated = int(reply.get("promptTokensEvaluated", 0))
            self.last_finish = reply.get("finish")
            self.last_tokens_out = int(reply.get("tokensOut", 0))
            self.last_timings = dict(reply.get("timings") or {})
        completion = completion_from_json(reply["completion"])
        completion.timings["worker_pid"] = float(self.worker_pid or 0)
        return completion

    def close(self) -> None:
        """Drop the connection (the worker stays for other clients until it is idle)."""
        with self._lock:
            self._disconnect()

    def stop_worker(self) -> None:
        """Terminate the worker this client is connected to (tests, benchmarks)."""
        with self._lock:
            pid = self.worker_pid
            self._disconnect()
            if pid is not None and _is_worker(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            if self._proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=10)

    # -- connection ---------------------------------------------------------------------------

    def _resolve_model(self, report: Callable[[str], None]) -> Path:
        if self.settings.path:
            path = Path(self.settings.path).expanduser()
        else:
            report("preparing the embedded default model")
            path = default_model_path(report)
        check_model_file(path)
        # Hashed here, with progress, rather than silently in the worker before it opens
        # its socket: the first hash of a large model takes seconds, and the worker then
        # finds it in the hash cache.
        sha256_file(path, hash_progress(report, path))
        return path

    def _ensure_loaded(self, report: Callable[[str], None], cancel: CancelToken) -> None:
        gone = self._gone()
        if gone is not None:  # closed between requests: exited idle, or crashed
            if gone.clean:
                self._disconnect()
            else:
                self._crashed(gone, "idle")
        if self._unavailable:
            raise ModelError(self.error or "on-box model unavailable; see onbox doctor")
        if self.loaded:
            return
        wait = self._restart_at - time.monotonic()
        if wait > 0 and cancel.wait(wait):
            raise Cancelled(cancel.reason)
        path = self._resolve_model(report)
        self.model_path = path
        if self._sock is None:
            self._connect(path, report)
        if self._hello.get("unavailable"):
            self._unavailable = True
            self.error = str(self._hello["unavailable"])
            self._disconnect()
            raise ModelError(self.error)
        try:
            reply = self._call(
                {"op": "load"}, cancel, LOAD_TIMEOUT, report, deadline_from_start=True
            )
        except _WorkerGone as gone:
            if gone.clean:
                self._disconnect()
                self._ensure_loaded(report, cancel)
                return
            raise WorkerCrashed(self._crashed(gone, "loading the model")) from None
        self._info = dict(reply.get("info") or {})
        self._loaded = True
        self.error = None

    def _connect(self, model: Path, report: Callable[[str], None]) -> None:
        directory = runtime_dir()
        name = worker_name(model, self.settings.load_settings())
        path = socket_path(directory, name)
        self._socket_path = path
        with FileLock(str(path) + ".lock", timeout=START_TIMEOUT):
            sock = self._try_connect(path)
            if sock is None:
                report("starting the model worker")
                self._spawn(path, directory / f"{name}.log")
                deadline = time.monotonic() + START_TIMEOUT
                while sock is None:
                    if self._proc is not None and self._proc.poll() is not None:
                        raise ModelError(
                            f"the model worker exited with {signal_name(self._proc.returncode)} "
                            f"before it started: {_log_tail(directory / f'{name}.log')}"
                        )
                    if time.monotonic() > deadline:
                        raise ModelError(f"the model worker did not open {path} in time")
                    time.sleep(0.02)
                    sock = self._try_connect(path)
        pid, uid, _ = peer_credentials(sock)
        refusal = peer_refusal(uid, os.getuid())
        if refusal is not None:
            sock.close()
            raise ModelError(f"refusing the model worker socket {path}: {refusal}")
        self._sock, self._reader, self._pending = sock, FrameReader(), []
        self.worker_pid = pid
        hello = self._next_message(CancelToken(), START_TIMEOUT)
        if hello.get("event") != "hello":
            raise ModelError(f"the model worker at {path} did not say hello: {hello}")
        self._hello = hello
        self.model_sha256 = hello.get("modelSha256")
        logger.info("connected to model worker pid %d (%s)", pid, path)

    @staticmethod
    def _try_connect(path: Path) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno == errno.ECONNREFUSED:  # a dead worker's socket: start afresh
                with contextlib.suppress(OSError):
                    path.unlink()
            elif exc.errno != errno.ENOENT:
                raise ModelError(f"cannot reach the model worker at {path}: {exc}") from exc
            return None

    def _spawn(self, path: Path, log: Path) -> None:
        config = {f.name: getattr(self.settings, f.name) for f in dataclasses.fields(self.settings)}
        config["path"] = str(self.model_path)
        command = [
            sys.executable,
            "-P",  # never import from the current directory: a checkout's onbox/ would shadow
            "-m",
            "onbox.inference.worker",
            "--socket",
            str(path),
            "--config",
            json.dumps(config),
            "--avoid",
            ",".join(self._hung),
        ]
        with log.open("ab") as out:
            os.chmod(log, 0o600)
            # Detached: its own session, never the server's stdout (the LSP channel).
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                close_fds=True,
            )
        _CHILDREN[:] = [p for p in _CHILDREN if p.poll() is None]
        _CHILDREN.append(self._proc)
        logger.info("started model worker pid %d", self._proc.pid)

    def _disconnect(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None
        self._loaded = False

    # -- messages -----------------------------------------------------------------------------

    def _gone(self) -> _WorkerGone | None:
        """How the worker closed the connection, seen without blocking (None: still open)."""
        if self._sock is None:
            return None
        try:
            while select.select([self._sock], [], [], 0)[0]:
                self._read_available()
        except _WorkerGone as gone:
            return gone
        return None

    def _read_available(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(1 << 20)
        except OSError as exc:
            raise _WorkerGone(False) from exc
        if not data:
            bye = any(m.get("event") == "bye" for m in self._pending)
            raise _WorkerGone(bye)
        try:
            self._pending.extend(self._reader.feed(data))
        except ProtocolError as exc:
            raise ModelError(f"the model worker sent garbage: {exc}") from exc

    def _next_message(self, cancel: CancelToken, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not self._pending:
            if time.monotonic() > deadline:
                raise _WorkerGone(False, "hang")
            assert self._sock is not None
            readable, _, _ = select.select([self._sock], [], [], POLL_SECONDS)
            if readable:
                self._read_available()
        return self._pending.pop(0)

    def _call(
        self,
        message: dict[str, Any],
        cancel: CancelToken,
        deadline: float,
        report: Callable[[str], None] | None = None,
        *,
        deadline_from_start: bool = False,
    ) -> dict[str, Any]:
        """Send ``message`` and wait for its result, relaying cancel, enforcing ``deadline``.

        The deadline runs from the worker's ``started`` (time spent queued behind other
        clients is not a hang), or from now with ``deadline_from_start``.
        """
        assert self._sock is not None
        rid = str(next(self._ids))
        try:
            self._sock.sendall(encode({**message, "id": rid}))
        except OSError:
            raise _WorkerGone(False) from None
        started_at = time.monotonic() if deadline_from_start else None
        cancel_sent = False
        while True:
            if cancel.cancelled and not cancel_sent:
                cancel_sent = True
                with contextlib.suppress(OSError):
                    self._sock.sendall(encode({"op": "cancel", "id": rid, "reason": cancel.reason}))
            if started_at is not None and time.monotonic() - started_at > deadline:
                raise _WorkerGone(False, self._kill_hung(deadline))
            if not self._pending:
                readable, _, _ = select.select([self._sock], [], [], POLL_SECONDS)
                if readable:
                    self._read_available()
                continue
            event = self._pending.pop(0)
            kind = event.get("event")
            if kind == "bye":
                self._pending.insert(0, event)
                raise _WorkerGone(True)
            if event.get("id") != rid:
                continue
            if kind == "started":
                started_at = time.monotonic()
            elif kind == "progress" and report is not None:
                report(str(event.get("message", "")))
            elif kind == "result":
                if event.get("ok"):
                    return event
                error = event.get("error") or {}
                text = str(error.get("message", "the model worker failed"))
                if error.get("type") == "Cancelled":
                    raise Cancelled(text)
                raise ModelError(text)

    def _kill_hung(self, deadline: float) -> str:
        pid = self.worker_pid
        if pid is not None and _is_worker(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return f"a hang (no answer in {deadline:g} s; Onbox killed it with SIGKILL)"

    # -- crashes ------------------------------------------------------------------------------

    def _death_cause(self) -> str:
        pid = self.worker_pid
        if self._proc is not None and self._proc.pid == pid:
            try:
                return signal_name(self._proc.wait(timeout=5))
            except subprocess.TimeoutExpired:
                pass
        if pid is not None and self._socket_path is not None:
            for _ in range(100):  # faulthandler writes before the process is gone
                if not _is_worker(pid):
                    break
                time.sleep(0.02)
            log = self._socket_path.with_suffix(".log")
            with contextlib.suppress(OSError):
                found = cause_from_log(log.read_text("utf-8", "replace"), pid)
                if found:
                    return found
        return "an unknown cause"

    def _crashed(self, gone: _WorkerGone, during: str) -> str:
        """Record a dead worker; return the message for the editor (empty for a clean exit)."""
        self._disconnect()
        if gone.clean:
            return "the model worker exited; it restarts on the next request"
        cause = gone.cause or self._death_cause()
        pid = self.worker_pid
        profile = (self.profile or {}).get("name", "unknown")
        key = str(self._hello.get("machineKey", ""))
        profiles = [str(p) for p in self._hello.get("profiles", [])]
        memory = ProfileMemory()
        if cause.startswith("a hang"):
            self._hung[profile] = cause
            entry = memory.entry(key) if key else {"works": None, "crashed": {}}
            entry["crashed"].update(self._hung)
        elif key:
            memory.record_crash(key, profile, cause)
            entry = memory.entry(key)
            entry["crashed"].update(self._hung)
        else:
            entry = {"works": None, "crashed": {profile: cause, **self._hung}}
        self.crashes += 1
        remaining = [p for p in profiles if p not in entry["crashed"]]
        if remaining:
            backoff = min(BACKOFF_BASE * 2 ** (self.crashes - 1), BACKOFF_MAX)
            self._restart_at = time.monotonic() + backoff
            action = f"Onbox restarts it with the {remaining[0]} profile"
        else:
            self._unavailable = True
            self.error = unavailable_message(entry)
            action = f"Onbox stopped restarting it: {self.error}"
        message = (
            f"Onbox: the on-box model worker (pid {pid}) crashed with {cause} while {during} "
            f"(profile {profile}); the request got an empty answer. {action}."
        )
        logger.error("%s", message)
        report = {
            "pid": pid,
            "cause": cause,
            "during": during,
            "profile": profile,
            "nextProfile": remaining[0] if remaining else None,
            "crashedProfiles": entry["crashed"],
            "modelSha256": self.model_sha256,
            "model": self.model_name,
            "unavailable": not remaining,
            "message": message,
        }
        if self.on_crash is not None:
            try:
                self.on_crash(report)
            except Exception:
                logger.exception("the crash callback failed")
        return message


def _is_worker(pid: int) -> bool:
    """Whether ``pid`` is (still) an Onbox model worker of this user."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else ""
    return b"onbox.inference.worker" in cmdline and state != "Z"


def _log_tail(log: Path) -> str:
    try:
        return log.read_text("utf-8", "replace")[-1500:]
    except OSError:
        return "(no log)"
