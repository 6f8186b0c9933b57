"""``pip install .`` puts exactly one import package, ``onbox``, into site-packages."""

from __future__ import annotations

import json
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from this checkout."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("onbox-*.whl")
    return built


def test_wheel_has_only_the_onbox_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.startswith("onbox-")}
    assert top == {"onbox"}, top
    for sub in ("server", "inference", "classification", "audit"):
        assert f"onbox/{sub}/__init__.py" in names
    assert not any(n.startswith(("tests/", "bench/", "editors/")) for n in names)


def dependency_dirs() -> list[str]:
    """The site directories the interpreter running the tests loads its packages from.

    Whether that interpreter is a venv, a system Python (Debian's dist-packages) or has a
    user site, these are where onbox's (large) dependencies are. Not the checkout.
    """
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dict.fromkeys(dirs) if Path(d).is_dir() and Path(d) != ROOT]


def test_fresh_venv_imports_onbox_server(wheel: Path, tmp_path: Path, default_model: Path) -> None:
    env_dir = tmp_path / "venv"
    # An isolated venv: the project itself comes only from the wheel, installed without
    # dependencies. system_site_packages would expose the *base* interpreter's packages,
    # which lack the dependencies when the tests run in a venv; instead a .pth file appends
    # the running interpreter's site directories. They come after the venv's own
    # site-packages, and .pth files in them (an editable onbox's finder) are not run.
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
        check=True,
        capture_output=True,
    )
    site_dir = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site_dir / "onbox-test-dependencies.pth").write_text(
        "".join(f"{d}\n" for d in dependency_dirs())
    )
    installed = {p.name for p in site_dir.iterdir()}
    assert "onbox" in installed
    for bare in ("server", "inference", "classification", "audit", "collector", "tests", "bench"):
        assert bare not in installed, f"bare package {bare!r} leaked into site-packages"
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import onbox.server.cli, onbox.inference.fim; print(onbox.server.cli.__file__)",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout: the import must come from the venv
    )
    assert str(site_dir) in probe.stdout
    help_text = subprocess.run(
        [str(env_dir / "bin" / "onbox"), "--help"], check=True, capture_output=True, text=True
    ).stdout
    assert "serve" in help_text and "complete" in help_text
    # README command 1 runs in the checkout, whose onbox/ folder must not shadow the
    # installed package in the model worker (it once did: the worker could not start).
    checkout = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [str(env_dir / "bin" / "onbox"), "complete", "--json", "--max-tokens", "8",
         "examples/billing.py:14:end"],
        cwd=checkout, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["destination"] == "on-box" and result["outcome"] in ("served", "empty")
