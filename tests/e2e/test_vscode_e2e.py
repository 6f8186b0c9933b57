"""VS Code extension end to end, in a real VS Code.

code-server (VS Code 1.100 in the browser) runs locally with the extension installed from
the ``.vsix`` that ``npm run package`` builds from ``editors/vscode``; Debian's Chromium,
driven by ``playwright-core`` (``editors/vscode/e2e/run.mjs``), uses it like a developer:
it opens a restricted and a public file of a git repository this test builds (a signed
policy labels the repository public; CODEOWNERS and ``.gitattributes`` raise ``billing/``
to restricted), reads the Onbox status bar item, types until the real ``onbox serve``
shows ghost text from the real default model, accepts it with Tab, clicks the status item
(Explain) and runs ``Onbox: Verify Journal``. The browser only observes; this module
decides, and checks the journal with the ``onbox`` CLI.

Switch: ``ONBOX_VSCODE_E2E=0`` turns it off. Otherwise it runs wherever its parts are
present (code-server from ``scripts/install-code-server.sh``, ``/usr/bin/chromium``,
Node, ``onbox``) and skips, saying what is missing, where they are not. One browser
session serves the whole module (about a minute on 2 cores, most of it loading
VS Code and the model); screenshots land in the test's temporary directory, or in
``$ONBOX_VSCODE_E2E_ARTIFACTS`` when set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.policies import PolicyBuilder

# The first test also pays for the module's session (build, code-server, browser): allow
# more than the suite's default 300 s on a busy machine.
pytestmark = [pytest.mark.editor, pytest.mark.model, pytest.mark.slow, pytest.mark.timeout(900)]

REPO_ROOT = Path(__file__).resolve().parents[2]
EXTENSION_DIR = REPO_ROOT / "editors" / "vscode"
INSTALLER = REPO_ROOT / "scripts" / "install-code-server.sh"
CHROMIUM = Path(os.environ.get("ONBOX_CHROMIUM", "/usr/bin/chromium"))

RESTRICTED_FILE = "billing/charge.py"
PUBLIC_FILE = "docs/examples/greet.py"
REMOTE = "https://example.com/acme/shop.git"
TYPED_LINE = "def refund(amount: int, fee: int) -> int:"

#: The shop repo is public through its tag; payments owners and secrets are restricted.
POLICY = (
    PolicyBuilder(
        "vscode-e2e",
        extra="""
[tags]
shop = "public"

[owners]
"@acme/payments" = "restricted"

[content]
secrets = "restricted"
pii = "restricted"
""",
    )
    .repo("example.com/acme/shop", "public", tags=["shop"])
    .toml()
)


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 300) -> str:
    """Run a command; fail the test with its output when it fails."""
    proc = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


@dataclass(frozen=True)
class Tools:
    """The executables the test needs."""

    code_server: Path
    node: str
    npm: str
    onbox: str


def find_tools() -> Tools:
    """The test's parts, or a skip that says which one is missing and how to get it."""
    if os.environ.get("ONBOX_VSCODE_E2E", "1") == "0":
        pytest.skip("ONBOX_VSCODE_E2E=0 turns the real-editor test off")
    node, npm, onbox = shutil.which("node"), shutil.which("npm"), shutil.which("onbox")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are not installed (the extension is built with npm)")
    if onbox is None:
        pytest.skip("`onbox` is not on PATH: pip install -e . first")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (or run {INSTALLER})")
    check = subprocess.run(
        ["bash", str(INSTALLER), "--check"], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        pytest.skip(f"code-server is not installed: run {INSTALLER} (about 2 minutes)")
    probe = subprocess.run([onbox, "serve", "--help"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("`onbox serve` is not available in this checkout")
    return Tools(Path(check.stdout.strip()), node, npm, onbox)


def build_vsix(tools: Tools) -> Path:
    """Package the extension from the current source (installs its npm deps if absent)."""
    env = dict(os.environ)
    if not (EXTENSION_DIR / "node_modules" / "@vscode" / "vsce").is_dir():
        run([tools.npm, "ci", "--no-audit", "--no-fund"], env, cwd=EXTENSION_DIR, timeout=600)
    run([tools.npm, "run", "package"], env, cwd=EXTENSION_DIR)
    vsix = EXTENSION_DIR / "dist" / "onbox.vsix"
    assert vsix.is_file(), "npm run package did not write dist/onbox.vsix"
    return vsix


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def build_repo(root: Path) -> Path:
    """A repository the policy labels public, with a restricted ``billing/``."""
    repo = root / "shop"
    (repo / "billing").mkdir(parents=True)
    (repo / "docs" / "examples").mkdir(parents=True)
    (repo / "CODEOWNERS").write_text("/billing/ @acme/payments\n")
    (repo / ".gitattributes").write_text(
        "billing/** onbox-label=restricted\ndocs/** onbox-label=public\n"
    )
    (repo / RESTRICTED_FILE).write_text(
        '"""Charge customers."""\n\n\ndef charge(amount: int, fee: int) -> int:\n'
        "    total = amount + fee\n    return total\n\n\n"
    )
    (repo / PUBLIC_FILE).write_text('def greet(name: str) -> str:\n    return "hello " + name\n')
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", REMOTE)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "fixture")
    return repo


def apply_policy(root: Path, tools: Tools, env: dict[str, str]) -> None:
    """An admin key, a trust root and a signed policy, applied as a workstation would."""
    admin = root / "admin"
    drop = root / "policy-drop"
    admin.mkdir()
    drop.mkdir()
    (admin / "policy.toml").write_text(POLICY)
    onbox = tools.onbox
    run([onbox, "admin", "keygen", "--out", str(admin / "admin")], env)
    run([onbox, "admin", "trust-root", "init", "--key", str(admin / "admin.pub"),
         "--threshold", "1", "--out", str(admin / "trust-root.json")], env)  # fmt: skip
    run([onbox, "admin", "trust-root", "install", str(admin / "trust-root.json")], env)
    run([onbox, "policy", "sign", str(admin / "policy.toml"), "--key", str(admin / "admin.key"),
         "--serial", "1", "--expires", "2099-01-01", "--out", str(drop / "shop.onbox-policy")], env)  # fmt: skip
    run([onbox, "policy", "pull", "--source", str(drop)], env)


def cli_labels(tools: Tools, env: dict[str, str], repo: Path) -> dict[str, str]:
    """What ``onbox classify`` (the same classifier, outside the editor) says."""
    out = run([tools.onbox, "classify", "--json", RESTRICTED_FILE, PUBLIC_FILE], env, cwd=repo)
    return {item["file"]: item["label"] for item in json.loads(out)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"code-server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    pytest.fail(f"code-server did not answer {url} within {timeout} s:\n{log.read_text()[-3000:]}")


@dataclass
class Session:
    """What one browser session saw, plus where to look afterwards."""

    observed: dict[str, Any]
    repo: Path
    journal_dir: Path
    env: dict[str, str]
    tools: Tools
    expected: dict[str, str]
    logs: Path  # searched for the Onbox output channel's log and code-server.log
    seconds: float

    def diagnostics(self) -> str:
        """The Onbox output channel and code-server's log, for failure messages."""
        parts = []
        for log in [*sorted(self.logs.rglob("*Onbox*.log")), self.logs / "code-server.log"]:
            if log.is_file():
                parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path) -> Iterator[Session]:
    tools = find_tools()
    began = time.monotonic()
    root = tmp_path_factory.mktemp("vscode-e2e")
    journal_dir = root / "data" / "journal"
    env = dict(os.environ)
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[name] = str(root / "xdg" / name.lower())
    env.update(
        ONBOX_DATA_DIR=str(root / "data"),
        ONBOX_JOURNAL_DIR=str(journal_dir),
        ONBOX_CONFIG_DIR=str(root / "config"),
        ONBOX_CACHE_DIR=str(model_cache_dir),
        ONBOX_TRUST_ROOT=str(root / "trust-root.json"),
    )
    vsix = build_vsix(tools)
    repo = build_repo(root)
    apply_policy(root, tools, env)
    expected = cli_labels(tools, env, repo)

    user_data, extensions = root / "user-data", root / "extensions"
    (user_data / "User").mkdir(parents=True)
    (user_data / "User" / "settings.json").write_text(
        json.dumps(
            {
                "onbox.server.path": tools.onbox,
                "onbox.completion.maxTokens": 16,
                "onbox.completion.temperature": 0,
                "onbox.policy.sources": [str(root / "policy-drop")],
                "workbench.startupEditor": "none",
                "workbench.tips.enabled": False,
                "workbench.enableExperiments": False,
                "security.workspace.trust.enabled": False,
                "telemetry.telemetryLevel": "off",
                "update.mode": "none",
                "extensions.autoCheckUpdates": False,
                "extensions.ignoreRecommendations": True,
                "git.enabled": False,
                "editor.inlineSuggest.enabled": True,
                "chat.commandCenter.enabled": False,
            }
        )
    )
    base = [
        str(tools.code_server),
        "--user-data-dir",
        str(user_data),
        "--extensions-dir",
        str(extensions),
    ]
    run([*base, "--install-extension", str(vsix)], env, timeout=120)

    port = free_port()
    log = root / "code-server.log"
    argv = [*base, "--auth", "none", "--bind-addr", f"127.0.0.1:{port}", "--disable-telemetry",
            "--disable-update-check", "--disable-workspace-trust", "--disable-getting-started-override",
            str(repo)]  # fmt: skip
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            argv, env=env, cwd=repo, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
            start_new_session=True,  # so teardown ends code-server, its extension host and onbox serve
        )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
        artifacts = Path(os.environ.get("ONBOX_VSCODE_E2E_ARTIFACTS", root / "screenshots"))
        config = {
            "url": f"http://127.0.0.1:{port}",
            "folder": str(repo),
            "chromium": str(CHROMIUM),
            "screenshots": str(artifacts),
            "out": str(root / "observed.json"),
            "restricted": RESTRICTED_FILE,
            "public": PUBLIC_FILE,
            "typeLine": TYPED_LINE,
            "journalDir": str(journal_dir),
            "timeoutMs": 180_000,
        }
        (root / "e2e.json").write_text(json.dumps(config))
        driver = subprocess.run(
            [tools.node, str(EXTENSION_DIR / "e2e" / "run.mjs"), str(root / "e2e.json")],
            cwd=EXTENSION_DIR, env=env, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        observed = (
            json.loads((root / "observed.json").read_text())
            if (root / "observed.json").is_file()
            else {}
        )
        sess = Session(observed, repo, journal_dir, env, tools, expected, root, 0.0)
        if driver.returncode != 0 or not observed:
            pytest.fail(
                f"the browser driver failed ({driver.returncode}): {observed.get('errors')}\n"
                f"{driver.stderr[-4000:]}\n{sess.diagnostics()}"
            )
        sess.seconds = time.monotonic() - began
        print(
            f"\nVS Code e2e: {sess.seconds:.0f} s in all, browser session {observed['elapsedMs'] / 1000:.0f} s"
        )
        yield sess
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def journal(session: Session, kind: str) -> list[dict[str, Any]]:
    """Entries of ``kind``, read back through ``onbox journal show``."""
    out = run(
        [session.tools.onbox, "journal", "show", "--dir", str(session.journal_dir), "--kind", kind,
         "--limit", "0", "--json"],
        session.env,
    )  # fmt: skip
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_status_bar_shows_each_files_label_and_destination(session: Session) -> None:
    files = session.observed["files"]
    # The policy in force labels the repository public; billing/ is raised to restricted.
    assert session.expected == {RESTRICTED_FILE: "restricted", PUBLIC_FILE: "public"}
    assert files["restricted"]["text"] == "restricted · on-box", session.diagnostics()
    assert files["public"]["text"] == "public · on-box", session.diagnostics()
    assert not files["restricted"]["warning"]


def test_status_tooltip_gives_the_reasons_and_the_policy(session: Session) -> None:
    tooltip = session.observed["files"]["restrictedTooltip"]
    assert "Onbox: restricted → on-box" in tooltip
    assert "Why restricted:" in tooltip
    assert "@acme/payments" in tooltip  # the CODEOWNERS reason
    assert "Policy: vscode-e2e (serial 1)" in tooltip
    assert "Journal: ok" in tooltip


def test_ghost_text_from_the_on_box_model_is_inserted_by_tab(session: Session) -> None:
    ghost = session.observed["ghost"]
    words = re.findall(r"\w+", ghost)
    assert words, f"the model's suggestion had no words: {ghost!r}"
    saved = (session.repo / RESTRICTED_FILE).read_text()
    inserted = saved[saved.index(TYPED_LINE) + len(TYPED_LINE) :]
    # The DOM holds the ghost text in pieces (inline part, extra lines), so compare words.
    assert set(words) <= set(re.findall(r"\w+", inserted)), (ghost, inserted)


def test_acceptance_is_journaled_with_label_and_destination(session: Session) -> None:
    uri = (session.repo / RESTRICTED_FILE).as_uri()
    deadline = time.monotonic() + 30
    entries: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not entries:
        entries = [e for e in journal(session, "acceptance") if e["body"].get("uri") == uri]
        time.sleep(0.2)
    assert entries, f"no acceptance for {uri} in the journal:\n{session.diagnostics()}"
    body = entries[-1]["body"]
    assert (body["how"], body["label"], body["destination"]) == ("whole", "restricted", "on-box")
    # The acceptance names the completion the server served and journaled for this file.
    served = [
        e["body"]
        for e in journal(session, "completion")
        if e["body"].get("id") == body["completionId"]
    ]
    assert served and served[0]["uri"] == uri and served[0]["label"] == "restricted", served
    verify = subprocess.run(
        [session.tools.onbox, "journal", "verify", "--no-progress", str(session.journal_dir)],
        env=session.env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_status_click_explains_the_file(session: Session) -> None:
    assert session.observed["explainTab"].startswith("Onbox: greet.py is public")
    body = session.observed["explainBody"]
    assert body.startswith("Onbox: why this file is public Completions go to on-box."), body
    assert "policy-repo" in body and "vscode-e2e" in body, body


def test_journal_and_policy_commands_show_the_servers_answers(session: Session) -> None:
    assert session.observed["verifyMessage"].startswith("Onbox journal verified:")
    assert session.observed["pullMessage"].startswith(
        ("Onbox applied policy", "Onbox policy unchanged")
    )
    stats = session.observed["statsBody"]
    assert stats.startswith("Onbox journal: last 7 days"), stats
    assert "no entries" not in stats  # the completion and its acceptance are in it


def test_screenshots_were_taken(session: Session) -> None:
    shots = [Path(p) for p in session.observed["screenshots"]]
    names = [p.stem.split("-", 1)[1] for p in shots]
    assert names == [
        "restricted-status", "tooltip", "ghost-text", "accepted", "public-status", "explain", "verify",
        "journal-stats", "restarted", "after-restart",
    ]  # fmt: skip
    for shot in shots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_restart_server_command_brings_up_a_working_server(session: Session) -> None:
    manual = session.observed["manualRestart"]
    assert manual["text"] == f"{session.expected[PUBLIC_FILE]} · on-box", manual
    assert len(manual["pids"]) == 1 and manual["pids"][0] not in manual["before"], manual
    assert session.observed["ghostAfterRestart"].strip()


def test_a_killed_server_is_restarted(session: Session) -> None:
    restart = session.observed["restart"]
    assert len(restart["before"]) == 1, restart  # one server for the window
    assert "onbox: restarting" in restart["seen"], restart
    assert restart["after"]["text"] == f"{session.expected[PUBLIC_FILE]} · on-box", restart
    assert not set(restart["after"]["pids"]) & set(restart["before"])


def test_journal_stats_count_the_acceptance(session: Session) -> None:
    assert "acceptance.accepted 1" in session.observed["statsBody"], session.observed["statsBody"]
