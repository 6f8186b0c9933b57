"""Finding and stopping the model workers a test started (by their runtime directory)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def worker_pids(runtime_dir: str) -> list[int]:
    """Live model workers whose socket is under ``runtime_dir``."""
    if not runtime_dir:
        return []
    needle = os.fsencode(runtime_dir)
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except (OSError, IndexError):
            continue
        if b"onbox.inference.worker" in cmdline and needle in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


def processes_mapping(path: Path) -> list[int]:
    """Processes that have ``path`` mapped into memory (from ``/proc/PID/maps``)."""
    target = str(path.resolve())
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if target in (proc / "maps").read_text(errors="replace"):
                found.append(int(proc.name))
    return found


def stop_workers(runtime_dir: str, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, every worker under ``runtime_dir``."""
    pids = worker_pids(runtime_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = [p for p in pids if p in worker_pids(runtime_dir)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def profile_ladder(extra_buffer_types: str = "auto", gpu_layers: int = -1) -> list[str]:
    """The worker's step-down profiles on this machine, in order.

    On an AMX CPU the configured profile already has no extra buffer types, so the one
    after it is ``cpu-only``; elsewhere it is ``no-extra-buffers``. Fault tests expect
    whichever this machine has.
    """
    from onbox.inference.worker_profiles import cpu_flags, profiles_for

    return [p.name for p in profiles_for(extra_buffer_types, gpu_layers, cpu_flags())]
