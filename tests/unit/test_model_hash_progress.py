"""The first hash of a large model file reports its progress; a cached hash is silent.

The file is generated (a GGUF header, then a sparse 64 MiB body), so the test reads a
real file of real size without writing one to disk.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from onbox.inference.local import ModelSettings
from onbox.inference.model import HASH_BLOCK, hash_progress, sha256_file
from onbox.inference.worker_client import WorkerDestination

SIZE = 64 * HASH_BLOCK


@pytest.fixture(autouse=True)
def own_hash_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with an empty model-hash cache."""
    monkeypatch.setenv("ONBOX_CACHE_DIR", str(tmp_path / "cache"))


def large_model(path: Path) -> Path:
    """A GGUF v3 header followed by zeros up to :data:`SIZE` bytes (sparse on disk)."""
    with path.open("wb") as fh:
        fh.write(b"GGUF" + (3).to_bytes(4, "little"))
        fh.truncate(SIZE)
    return path


def expected_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_first_hash_reports_rising_percentages_up_to_100(tmp_path: Path) -> None:
    """Every whole percent is reported at most once, in order, ending with 100."""
    model = large_model(tmp_path / "big.gguf")
    seen: list[int] = []
    assert sha256_file(model, seen.append) == expected_sha256(model)
    assert seen == sorted(set(seen)), "percentages must rise, each reported once"
    assert seen[-1] == 100
    assert len(seen) >= 50, f"a 64-block file should report most percents, got {seen}"
    assert all(0 <= p <= 100 for p in seen)


def test_cached_hash_reports_nothing(tmp_path: Path) -> None:
    """A warm start (same size and mtime) reads the cache and reports no progress."""
    model = large_model(tmp_path / "big.gguf")
    first = sha256_file(model)
    seen: list[int] = []
    assert sha256_file(model, seen.append) == first
    assert seen == []


def test_empty_file_reports_100(tmp_path: Path) -> None:
    """A zero-length file is done at once: 100, never a division by zero."""
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    seen: list[int] = []
    assert sha256_file(empty, seen.append) == hashlib.sha256(b"").hexdigest()
    assert seen == [100]


def test_hash_progress_names_the_file(tmp_path: Path) -> None:
    """The progress lines the editor shows say which file is being checked, and how far."""
    lines: list[str] = []
    hash_progress(lines.append, tmp_path / "model.gguf")(42)
    assert lines == ["checking model.gguf: 42%"]


def test_model_load_reports_hash_progress_before_the_worker_starts(tmp_path: Path) -> None:
    """The worker client hashes the configured model with progress through ``report``.

    This is the path ``onbox serve``'s load takes (its ``report`` becomes the editor's
    work-done progress); the worker then finds the hash cached.
    """
    model = large_model(tmp_path / "big.gguf")
    client = WorkerDestination(ModelSettings(path=str(model)), clearance="restricted")
    lines: list[str] = []
    assert client._resolve_model(lines.append) == model
    percents = [int(line.rsplit(" ", 1)[1].rstrip("%")) for line in lines]
    assert lines and all(line.startswith("checking big.gguf: ") for line in lines)
    assert percents == sorted(set(percents)) and percents[-1] == 100
    # The worker's own hash of the same file is now a cache hit (no progress, same value).
    again: list[int] = []
    assert sha256_file(model, again.append) == expected_sha256(model) and again == []
