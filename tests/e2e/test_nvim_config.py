"""The Neovim plugin's setup and rendering logic, checked in a real headless Neovim
without a server: ``nvim -l tests/e2e/nvim/config_spec.lua`` loads the plugin from the
runtimepath (as lazy.nvim does) and checks the LSP config it registers, the statusline
text for each server state, and how accept-line/word split a suggestion."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_nvim import PLUGIN_DIR, nvim_binary

pytestmark = [pytest.mark.editor]

SPEC = Path(__file__).resolve().parent / "nvim" / "config_spec.lua"


def test_setup_registers_the_server_and_renders_status(tmp_path: Path) -> None:
    env = {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [str(nvim_binary()), "--headless", "--clean", "-l", str(SPEC), str(PLUGIN_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "0 failed" in output, output
