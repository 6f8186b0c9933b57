"""The packaged VS Code extension: ``npm run package`` must produce a ``.vsix`` that holds
the esbuild bundle (with vscode-languageclient inside) and nothing from ``src/`` or
``node_modules/``. About 5 s; skipped where Node.js is not installed.

The extension's type check, lint and unit tests (``npm run check``) run in
``scripts/test`` before pytest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

EXTENSION_DIR = Path(__file__).resolve().parents[2] / "editors" / "vscode"


def npm(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run npm in the extension's directory (installing its dependencies first if needed)."""
    exe = shutil.which("npm")
    if exe is None or shutil.which("node") is None:
        pytest.skip("Node.js and npm are not installed (apt-get install -y nodejs npm)")
    if not (EXTENSION_DIR / "node_modules" / "typescript").is_dir():
        install = subprocess.run(
            [exe, "ci", "--no-audit", "--no-fund"],
            cwd=EXTENSION_DIR,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert install.returncode == 0, install.stdout + install.stderr
    return subprocess.run(
        [exe, *args],
        cwd=EXTENSION_DIR,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_vsix_ships_only_the_bundle() -> None:
    result = npm("run", "package")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    vsix = EXTENSION_DIR / "dist" / "onbox.vsix"
    with zipfile.ZipFile(vsix) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("extension/package.json"))
        bundle = archive.read("extension/dist/extension.js").decode()
    shipped = {n for n in names if n.startswith("extension/")}
    assert shipped == {
        "extension/package.json",
        "extension/dist/extension.js",
        "extension/readme.md",
        "extension/LICENSE.txt",
    }, shipped
    assert manifest["main"] == "./dist/extension.js"
    # vscode-languageclient is bundled: besides Node's own modules only `vscode` is left
    # to the extension host to provide.
    builtins = set(json.loads(subprocess.check_output(
        ["node", "-p", "JSON.stringify(require('module').builtinModules)"], text=True
    )))  # fmt: skip
    required = set(re.findall(r'require\("([^"]+)"\)', bundle))
    third_party = {m for m in required if m.removeprefix("node:") not in builtins}
    assert third_party == {"vscode"}, third_party
    assert "textDocument/inlineCompletion" in bundle
