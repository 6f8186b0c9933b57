"""Shared fixtures: isolated Onbox directories and the real default model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

#: The assembled default model is cached across test runs here (it is ~250 MB).
SHARED_CACHE = Path(os.environ.get("ONBOX_TEST_CACHE", Path.home() / ".cache" / "onbox-tests"))


def pytest_configure(config: pytest.Config) -> None:
    """Keep the whole run away from the real user's Onbox files (servers inherit this)."""
    import tempfile

    SHARED_CACHE.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="onbox-tests-"))
    os.environ.setdefault("ONBOX_CACHE_DIR", str(SHARED_CACHE))
    os.environ.setdefault("ONBOX_DATA_DIR", str(run_dir / "data"))
    os.environ.setdefault("ONBOX_CONFIG_DIR", str(run_dir / "config"))
    os.environ.setdefault("ONBOX_TRUST_ROOT", str(run_dir / "no-trust-root.json"))
    # Model worker sockets: short (AF_UNIX paths are limited to 108 bytes) and per run.
    os.environ.setdefault("ONBOX_RUNTIME_DIR", tempfile.mkdtemp(prefix="ob-rt-", dir="/tmp"))


def pytest_unconfigure(config: pytest.Config) -> None:
    """No model worker started by this run outlives it."""
    from tests.support.workers import stop_workers

    stop_workers(os.environ.get("ONBOX_RUNTIME_DIR", ""))


@pytest.fixture(scope="session")
def model_cache_dir() -> Path:
    """A cache dir shared by the whole run so the default model is assembled once."""
    SHARED_CACHE.mkdir(parents=True, exist_ok=True)
    return SHARED_CACHE


@pytest.fixture(scope="session")
def default_model(model_cache_dir: Path) -> Path:
    """Path of the verified embedded default GGUF."""
    old = os.environ.get("ONBOX_CACHE_DIR")
    os.environ["ONBOX_CACHE_DIR"] = str(model_cache_dir)
    try:
        from onbox.inference.model import default_model_path

        return default_model_path()
    finally:
        if old is None:
            os.environ.pop("ONBOX_CACHE_DIR", None)
        else:
            os.environ["ONBOX_CACHE_DIR"] = old


@pytest.fixture
def onbox_env(
    tmp_path: Path, model_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Environment for a server or CLI under test: private data, shared model cache."""
    env = {
        "ONBOX_DATA_DIR": str(tmp_path / "data"),
        "ONBOX_CACHE_DIR": str(model_cache_dir),
        "ONBOX_CONFIG_DIR": str(tmp_path / "config"),
        "ONBOX_TRUST_ROOT": str(tmp_path / "no-trust-root.json"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield {**os.environ, **env}
