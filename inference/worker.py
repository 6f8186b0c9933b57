"""The model worker: the only process that loads llama.cpp.

``python -m onbox.inference.worker --socket PATH --config JSON`` serves one model to every
``onbox serve`` and ``onbox complete`` of the user over a Unix socket (framing in
:mod:`onbox.inference.worker_protocol`). The first client starts it, detached; it exits
after ``workerIdleSeconds`` without a request. A native fault here ends this process
only: the clients see the connection close, report it and start a new worker, which
picks a safer load profile (:mod:`onbox.inference.worker_profiles`).

Threads: the accept loop (main), one reader per client, and one generation thread that
takes jobs from a queue — one generation at a time, whoever asked. A job cancelled while
queued never reaches the model; a running one stops within one token, because ``cancel``
messages are read by the client's reader thread while the generation runs.

``--smoke`` loads the model with one profile, decodes one token and prints a JSON line:
``onbox doctor`` runs it in a child process.

Test-only fault injection: ``ONBOX_WORKER_FAULT=segv-on-decode`` (or ``hang-on-decode``),
optionally ``@PROFILE`` to fault only under that profile, makes the first decode of each
worker process kill itself with SIGSEGV (or sleep forever).
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import json
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from onbox.inference.destination import CancelToken, CompletionRequest
from onbox.inference.errors import Cancelled, InferenceError, ModelError
from onbox.inference.local import LlamaCppDestination, ModelSettings, llama_build_info
from onbox.inference.model import check_model_file, default_model_path, sha256_file
from onbox.inference.worker_profiles import (
    Profile,
    ProfileMemory,
    amx_flags,
    choose_profile,
    cpu_flags,
    gpu_description,
    machine_key,
    profiles_for,
    unavailable_message,
)
from onbox.inference.worker_protocol import (
    ProtocolError,
    completion_to_json,
    peer_credentials,
    peer_refusal,
    recv_message,
    request_from_json,
    send_message,
)

logger = logging.getLogger(__name__)

FAULT_ENV = "ONBOX_WORKER_FAULT"


def fault_hook(profile: str, spec: str | None = None) -> Callable[[], None] | None:
    """The test-only fault for this process, from ``ONBOX_WORKER_FAULT`` (None: no fault)."""
    spec = os.environ.get(FAULT_ENV, "") if spec is None else spec
    if not spec:
        return None
    kind, _, only = spec.partition("@")
    if only and only != profile:
        return None
    if kind not in ("segv-on-decode", "hang-on-decode"):
        logger.warning("ignoring unknown %s=%s", FAULT_ENV, spec)
        return None

    def fault() -> None:
        logger.warning("test fault %s under profile %s", kind, profile)
        if kind == "segv-on-decode":
            os.kill(os.getpid(), signal.SIGSEGV)
        while True:
            time.sleep(3600)

    return fault


@dataclass
class Client:
    """One connected language server (or CLI)."""

    sock: socket.socket
    pid: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    jobs: dict[str, Job] = field(default_factory=dict)
    open: bool = True

    def send(self, message: dict[str, Any]) -> None:
        """Send, ignoring a client that has gone away (its reader cleans up)."""
        with self.lock:
            if not self.open:
                return
            try:
                send_message(self.sock, message)
            except OSError:
                self.open = False


@dataclass
class Job:
    """One completion waiting for (or holding) the model."""

    id: str
    client: Client
    request: CompletionRequest
    prompt: dict[str, int]
    cancel: CancelToken
    answered: bool = False  # a queued job cancelled is answered at once, by the reader
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> bool:
        """Claim the right to answer (and, for the generator, to run) this job."""
        with self.lock:
            if self.answered:
                return False
            self.answered = True
            return True


class Worker:
    """The model and the socket it is served on."""

    def __init__(
        self, settings: ModelSettings, model_path: Path, avoid: tuple[str, ...] = ()
    ) -> None:
        self.settings = settings
        self.model_path = model_path
        flags = cpu_flags()
        build = llama_build_info()
        self.build = build
        self.amx = amx_flags(flags)
        self.sha256 = sha256_file(model_path)
        self.key = machine_key(
            f"{build['version']}|{build['systemInfo']}", self.sha256, flags, gpu_description()
        )
        self.profiles = profiles_for(settings.extra_buffer_types, settings.gpu_layers, flags)
        self.memory = ProfileMemory()
        entry = self.memory.entry(self.key)
        # Profiles that hung in the starting client's session: skipped now, never remembered
        # (a hang may be a loaded machine rather than a fault of the profile).
        entry["crashed"].update({name: "hung in this session" for name in avoid})
        self.profile = choose_profile(self.profiles, entry)
        self.unavailable = None if self.profile is not None else unavailable_message(entry)
        profile = self.profile or self.profiles[-1]
        self.engine = LlamaCppDestination(
            dataclasses.replace(settings, path=str(model_path), gpu_layers=profile.gpu_layers),
            use_extra_bufts=profile.extra_bufts,
            before_decode=fault_hook(profile.name),
        )
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.last_activity = time.monotonic()
        self.busy = 0
        self.clients: list[Client] = []
        self.clients_lock = threading.Lock()
        self.remembered = False
        self.stopping = False

    # -- what clients are told -----------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        """The first message on every connection."""
        return {
            "event": "hello",
            "pid": os.getpid(),
            "profile": self.profile.to_json() if self.profile else None,
            "profiles": [p.name for p in self.profiles],
            "machineKey": self.key,
            "modelSha256": self.sha256,
            "model": self.model_path.name,
            "modelPath": str(self.model_path),
            "build": self.build,
            "amx": self.amx,
            "unavailable": self.unavailable,
        }

    def info(self) -> dict[str, Any]:
        """The loaded model's description."""
        fim = self.engine.fim_format
        return {**self.hello(), "loaded": self.engine.loaded, "fim": fim.family if fim else None}

    # -- serving ----------------------------------------------------------------------------

    def serve(self, path: Path) -> int:
        """Accept clients until idle; return the exit status."""
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        os.chmod(path, 0o600)
        server.listen(16)
        server.settimeout(0.5)
        inode = path.stat().st_ino
        # SIGTERM is a request to stop, not a fault: say bye so clients do not count a crash.
        signal.signal(signal.SIGTERM, lambda _sig, _frame: setattr(self, "stopping", True))
        threading.Thread(target=self._generate_forever, name="generate", daemon=True).start()
        logger.info(
            "onbox model worker pid=%d serving %s on %s", os.getpid(), self.model_path, path
        )
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                if self._should_exit(path, inode):
                    break
                continue
            threading.Thread(target=self._serve_client, args=(conn,), daemon=True).start()
        self._goodbye(path, inode)
        server.close()
        return 0

    def _should_exit(self, path: Path, inode: int) -> bool:
        if self.stopping:
            return True
        try:
            if path.stat().st_ino != inode:
                logger.info("socket %s was replaced; exiting", path)
                return True
        except OSError:
            logger.info("socket %s was removed; exiting", path)
            return True
        idle = time.monotonic() - self.last_activity
        return self.busy == 0 and self.jobs.empty() and idle > self.settings.worker_idle_seconds

    def _goodbye(self, path: Path, inode: int) -> None:
        """Unlink our socket (under the start lock, so a new worker's is never removed)."""
        try:
            with FileLock(str(path) + ".lock", timeout=5):
                if path.exists() and path.stat().st_ino == inode:
                    path.unlink()
        except (OSError, Timeout):
            logger.warning("could not remove %s", path)
        with self.clients_lock:
            clients = list(self.clients)
        for client in clients:
            client.send({"event": "bye", "reason": "stopped" if self.stopping else "idle"})
        logger.info("exiting (%s)", "SIGTERM" if self.stopping else "idle")

    def _serve_client(self, conn: socket.socket) -> None:
        pid, uid, _ = peer_credentials(conn)
        refusal = peer_refusal(uid, os.getuid())
        if refusal is not None:
            logger.warning("refused pid %d: %s", pid, refusal)
            conn.close()
            return
        client = Client(conn, pid)
        with self.clients_lock:
            self.clients.append(client)
        client.send(self.hello())
        try:
            while True:
                message = recv_message(conn)
                if message is None:
                    break
                self.last_activity = time.monotonic()
                self._dispatch(client, message)
        except (OSError, ProtocolError) as exc:
            logger.warning("client pid %d: %s", pid, exc)
        finally:
            client.open = False
            for job in list(client.jobs.values()):
                job.cancel.cancel("the client disconnected")
            with self.clients_lock:
                self.clients.remove(client)
            conn.close()

    def _dispatch(self, client: Client, message: dict[str, Any]) -> None:
        op, rid = message.get("op"), str(message.get("id", ""))
        if op == "cancel":
            job = client.jobs.get(rid)
            if job is not None:
                job.cancel.cancel(str(message.get("reason") or "cancelled"))
                if job.take():  # still queued: answer now; it never reaches the model
                    client.send(_error(rid, Cancelled(job.cancel.reason)))
        elif op == "describe":
            client.send({"event": "result", "id": rid, "ok": True, "info": self.info()})
        elif op == "load":
            self._load(client, rid)
        elif op == "complete":
            request = request_from_json(message["request"])
            prompt = {k: int(v) for k, v in dict(message.get("prompt") or {}).items()}
            job = Job(rid, client, request, prompt, CancelToken())
            client.jobs[rid] = job
            self.jobs.put(job)
        else:
            client.send(_error(rid, ProtocolError(f"unknown op {op!r}")))

    def _load(self, client: Client, rid: str) -> None:
        if self.unavailable is not None:
            client.send(_error(rid, ModelError(self.unavailable)))
            return

        def report(text: str) -> None:
            client.send({"event": "progress", "id": rid, "message": text})

        try:
            self.engine.load(report)
        except ModelError as exc:
            client.send(_error(rid, exc))
            return
        except Exception as exc:
            logger.exception("load failed")
            client.send(_error(rid, ModelError(f"model load failed: {exc}")))
            return
        client.send({"event": "result", "id": rid, "ok": True, "info": self.info()})

    # -- generating ---------------------------------------------------------------------

    def _generate_forever(self) -> None:
        while True:
            job = self.jobs.get()
            self.busy += 1
            try:
                self._generate(job)
            finally:
                job.client.jobs.pop(job.id, None)
                self.busy -= 1
                self.last_activity = time.monotonic()

    def _generate(self, job: Job) -> None:
        if not job.take():  # cancelled while queued, and already answered
            return
        if job.cancel.cancelled:
            job.client.send(_error(job.id, Cancelled(job.cancel.reason)))
            return
        job.client.send({"event": "started", "id": job.id})
        engine = self.engine
        # Prompt budgets are each client's own settings; load settings are the worker's.
        engine.settings = dataclasses.replace(
            engine.settings,
            prefix_tokens=job.prompt.get("prefix_tokens", self.settings.prefix_tokens),
            suffix_tokens=job.prompt.get("suffix_tokens", self.settings.suffix_tokens),
        )
        before = engine.generations_started
        try:
            completion = engine.complete(job.request, job.cancel)
        except InferenceError as exc:
            job.client.send(_error(job.id, exc))
            return
        except Exception as exc:
            logger.exception("generation failed")
            job.client.send(_error(job.id, ModelError(f"generation failed in the worker: {exc}")))
            return
        if not self.remembered and self.profile is not None:
            self.remembered = True
            try:
                self.memory.record_works(self.key, self.profile.name)
            except OSError as exc:
                logger.warning("could not remember profile %s: %s", self.profile.name, exc)
        job.client.send(
            {
                "event": "result",
                "id": job.id,
                "ok": True,
                "completion": completion_to_json(completion),
                "started": engine.generations_started > before,
                "promptTokensEvaluated": engine.last_prompt_tokens_evaluated,
                "finish": engine.last_finish,
                "tokensOut": engine.last_tokens_out,
                "timings": engine.last_timings,
            }
        )


def _error(rid: str, exc: Exception) -> dict[str, Any]:
    return {
        "event": "result",
        "id": rid,
        "ok": False,
        "error": {"type": type(exc).__name__, "message": str(exc)},
    }


# -- entry point ------------------------------------------------------------------------


def settings_from_json(raw: str) -> ModelSettings:
    """Model settings passed on the command line."""
    fields = {f.name for f in dataclasses.fields(ModelSettings)}
    return ModelSettings(**{k: v for k, v in json.loads(raw).items() if k in fields})


def _model_path(settings: ModelSettings) -> Path:
    path = Path(settings.path).expanduser() if settings.path else default_model_path()
    check_model_file(path)
    return path


def smoke(settings: ModelSettings, profile_name: str | None) -> dict[str, Any]:
    """Load with one profile and decode one token (run in a child by ``onbox doctor``)."""
    path = _model_path(settings)
    flags = cpu_flags()
    profiles = profiles_for(settings.extra_buffer_types, settings.gpu_layers, flags)
    profile: Profile = next((p for p in profiles if p.name == profile_name), profiles[0])
    engine = LlamaCppDestination(
        dataclasses.replace(settings, path=str(path), gpu_layers=profile.gpu_layers),
        use_extra_bufts=profile.extra_bufts,
        before_decode=fault_hook(profile.name),
    )
    started = time.perf_counter()
    engine.load()
    loaded = time.perf_counter()
    decode = engine.smoke_decode()
    build = llama_build_info()
    return {
        "ok": True,
        "profile": profile.to_json(),
        "profiles": [p.name for p in profiles],
        "amx": amx_flags(flags),
        "loadSeconds": loaded - started,
        "decodeSeconds": decode,
        "modelPath": str(path),
        "modelSha256": engine.model_sha256,
        "build": build,
        "machineKey": machine_key(
            f"{build['version']}|{build['systemInfo']}",
            engine.model_sha256 or "",
            flags,
            gpu_description(),
        ),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the worker (or the smoke test)."""
    parser = argparse.ArgumentParser(prog="python -m onbox.inference.worker")
    parser.add_argument("--socket", help="Unix socket path to serve on")
    parser.add_argument("--config", required=True, help="model settings as JSON")
    parser.add_argument("--smoke", action="store_true", help="load, decode one token, print JSON")
    parser.add_argument("--profile", help="with --smoke: the profile to test")
    parser.add_argument("--avoid", default="", help="profiles to skip, comma-separated")
    args = parser.parse_args(argv)
    faulthandler.enable()  # a native fault leaves its signal name in the log
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s worker[{os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    settings = settings_from_json(args.config)
    if args.smoke:
        try:
            result = smoke(settings, args.profile)
        except ModelError as exc:
            result = {"ok": False, "error": str(exc)}
        sys.stdout.write(json.dumps(result) + "\n")
        return 0 if result["ok"] else 1
    if not args.socket:
        parser.error("--socket is required")
    try:
        avoid = tuple(name for name in args.avoid.split(",") if name)
        worker = Worker(settings, _model_path(settings), avoid)
    except ModelError as exc:
        logger.error("%s", exc)
        return 3
    return worker.serve(Path(args.socket))


if __name__ == "__main__":
    sys.exit(main())
