"""Load profiles of the on-box model, from as configured down to the safest, and their memory.

A native fault in llama.cpp is usually tied to one code path of one build on one kind of
machine: AMX repacking of the weights on Sapphire Rapids CPUs, a GPU driver. So when the
model worker crashes, the next start steps down one profile::

    configured          what the settings ask for (extra buffer types off on AMX CPUs
                        unless model.extraBufferTypes is "on")
    no-extra-buffers    llama_model_params.use_extra_bufts = False (no AMX/repack buffers)
    cpu-only            no extra buffer types and no layers on the GPU
    (none left)         the on-box model is unavailable until ``onbox doctor`` clears it

Profiles that would load the same way are listed once. What happened is remembered per
machine key — llama.cpp build, model sha256, CPU flags, GPU — in ``model-profiles.json``
in the user cache dir, so a machine pays for a crash at most once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from onbox import paths

logger = logging.getLogger(__name__)

AMX_FLAGS = ("amx_tile", "amx_int8", "amx_bf16")
EXTRA_BUFFER_CHOICES = ("auto", "on", "off")


@dataclass(frozen=True)
class Profile:
    """How the worker loads the model."""

    name: str
    extra_bufts: bool
    gpu_layers: int  # -1: all layers the build can offload
    why: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "name": self.name,
            "extraBufferTypes": self.extra_bufts,
            "gpuLayers": self.gpu_layers,
            "why": self.why,
        }


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU feature flags (empty where ``/proc/cpuinfo`` is not readable)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def amx_flags(flags: frozenset[str]) -> list[str]:
    """The AMX flags among ``flags``."""
    return [f for f in AMX_FLAGS if f in flags]


def profiles_for(extra_buffer_types: str, gpu_layers: int, flags: frozenset[str]) -> list[Profile]:
    """The step-down list for these settings on a CPU with ``flags``."""
    amx = amx_flags(flags)
    if extra_buffer_types == "on":
        extra, why = True, "model.extraBufferTypes is on"
    elif extra_buffer_types == "off":
        extra, why = False, "model.extraBufferTypes is off"
    elif amx:
        extra = False
        why = (
            f"this CPU has AMX ({' '.join(amx)}): llama.cpp's AMX repack buffers crash at the "
            'first decode, so extra buffer types are off (set model.extraBufferTypes to "on" to '
            "use them)"
        )
    else:
        extra, why = True, "as configured (no AMX on this CPU)"
    candidates = [
        Profile("configured", extra, gpu_layers, why),
        Profile(
            "no-extra-buffers",
            False,
            gpu_layers,
            "the configured profile crashed; loading without extra buffer types (AMX/repack)",
        ),
        Profile("cpu-only", False, 0, "safer profiles crashed; loading on the CPU only"),
    ]
    out: list[Profile] = []
    for profile in candidates:
        if not any(
            (p.extra_bufts, p.gpu_layers) == (profile.extra_bufts, profile.gpu_layers) for p in out
        ):
            out.append(profile)
    return out


def gpu_description() -> str:
    """The GPUs the kernel knows of (NVIDIA's proc files, DRM cards); empty when none."""
    found: list[str] = []
    nvidia = Path("/proc/driver/nvidia/gpus")
    with contextlib.suppress(OSError):
        for info in sorted(nvidia.glob("*/information")):
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    found.append(line.split(":", 1)[1].strip())
    with contextlib.suppress(OSError):
        for vendor in sorted(Path("/sys/class/drm").glob("card[0-9]*/device/vendor")):
            device = vendor.with_name("device")
            found.append(f"{vendor.read_text().strip()}:{device.read_text().strip()}")
    return ";".join(found)


def machine_key(build: str, model_sha256: str, flags: frozenset[str], gpu: str) -> str:
    """What a remembered profile is valid for."""
    raw = json.dumps(
        {"build": build, "model": model_sha256, "cpu": sorted(flags), "gpu": gpu}, sort_keys=True
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


class ProfileMemory:
    """``model-profiles.json``: per machine key, the profile that works and those that crashed.

    Several servers and workers update it; every change happens under a file lock.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.cache_dir() / "model-profiles.json"
        self._lock = FileLock(str(self.path) + ".lock", timeout=10)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def entry(self, key: str) -> dict[str, Any]:
        """``{"works": name | None, "crashed": {name: cause}}`` for ``key``."""
        found = self._read().get(key)
        entry = found if isinstance(found, dict) else {}
        crashed = entry.get("crashed")
        return {
            "works": entry.get("works"),
            "crashed": dict(crashed) if isinstance(crashed, dict) else {},
        }

    def _update(self, key: str, works: str | None, crashed: dict[str, str]) -> None:
        """Write one entry; the caller holds the lock."""
        data = self._read()
        data[key] = {"works": works, "crashed": crashed, "updated": time.time()}
        self._write(data)

    def record_works(self, key: str, profile: str) -> None:
        """``profile`` answered a completion on this machine."""
        with self._lock_dir():
            entry = self.entry(key)
            if entry["works"] == profile:
                return
            crashed = {k: v for k, v in entry["crashed"].items() if k != profile}
            self._update(key, profile, crashed)

    def record_crash(self, key: str, profile: str, cause: str) -> int:
        """``profile`` crashed (idempotent per profile); return how many profiles have crashed."""
        with self._lock_dir():
            entry = self.entry(key)
            crashed = entry["crashed"]
            if profile not in crashed or entry["works"] == profile:
                crashed[profile] = cause
                works = None if entry["works"] == profile else entry["works"]
                self._update(key, works, crashed)
            return len(crashed)

    def forget(self, key: str) -> None:
        """Drop what is known for ``key`` (``onbox doctor`` re-tests from scratch)."""
        with self._lock_dir():
            data = self._read()
            if data.pop(key, None) is not None:
                self._write(data)

    @contextlib.contextmanager
    def _lock_dir(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            yield


def choose_profile(profiles: list[Profile], entry: dict[str, Any]) -> Profile | None:
    """The profile to load now: the remembered one, else the first that has not crashed."""
    by_name = {p.name: p for p in profiles}
    works = entry.get("works")
    if isinstance(works, str) and works in by_name:
        return by_name[works]
    crashed = entry.get("crashed") or {}
    return next((p for p in profiles if p.name not in crashed), None)


def unavailable_message(entry: dict[str, Any]) -> str:
    """The status when every profile has crashed."""
    crashed: dict[str, str] = entry.get("crashed") or {}
    causes = ", ".join(f"{name}: {cause}" for name, cause in crashed.items())
    return f"on-box model unavailable: crashed {len(crashed)} times ({causes}); see onbox doctor"
