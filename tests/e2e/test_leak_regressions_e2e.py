"""The canary probe's leaks, one regression test each, through the real ``onbox serve``.

An outside probe planted canaries in restricted files and recorded every byte two
loopback "clouds" received: ``cloud`` (OpenAI-compatible, clearance public) and ``corp``
(Anthropic, clearance internal). Each test below replays one way restricted text got
out and asserts that no body either server received holds the canary, and that the
journal has no egress entry for the file.

The on-box model is switched off (a model path that does not exist): a restricted file
then gets no suggestion at all, which is what makes a leak unambiguous — any answer
for it could only have come from a cloud.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from onbox.audit import iter_entries
from tests.e2e.lsp_support import (
    SERVER_COMMAND,
    git,
    inline_params,
    make_client,
    open_doc,
    part,
    wait_for_status,
    wait_ready,
)
from tests.support.policies import PolicyBuilder
from tests.support.recording_server import Fault, RecordingServer

pytestmark = [pytest.mark.slow]

#: A tree-sitter detector: importing the Stripe SDK makes a file restricted.
STRIPE_DETECTOR = """
[[detectors]]
name = "stripe-sdk"
kind = "tree-sitter"
language = "python"
query = '(import_statement name: (dotted_name) @m (#eq? @m "stripe"))'
label = "restricted"
"""


@dataclass
class Probe:
    """The two recording clouds, a policy file and the journal of one server."""

    cloud: RecordingServer
    corp: RecordingServer
    policy: Path
    journal: Path

    def bodies(self, since: tuple[int, int] = (0, 0)) -> list[bytes]:
        """Every body either cloud received (after ``since`` = counts seen earlier)."""
        return [r.body for r in self.cloud.requests[since[0] :]] + [
            r.body for r in self.corp.requests[since[1] :]
        ]

    def counts(self) -> tuple[int, int]:
        """How many requests each cloud has received so far."""
        return len(self.cloud.requests), len(self.corp.requests)

    def assert_never_sent(self, canary: str, since: tuple[int, int] = (0, 0)) -> None:
        """No cloud received ``canary``."""
        for body in self.bodies(since):
            assert canary.encode() not in body, f"{canary} left the machine"

    def egress_paths(self) -> list[str]:
        """The ``path`` of every egress entry in the journal."""
        return [str(e["body"]["path"]) for e in iter_entries(self.journal) if e["kind"] == "egress"]


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[Probe]:
    with RecordingServer() as cloud, RecordingServer() as corp:
        cloud.set_reply("return 0")
        corp.set_reply("return 0")
        policy = tmp_path / "policy.toml"
        write_policy(policy, cloud, corp)
        yield Probe(cloud, corp, policy, tmp_path / "journal")


def write_policy(
    path: Path,
    cloud: RecordingServer,
    corp: RecordingServer,
    *,
    default: str = "restricted",
    expires: str | None = None,
) -> None:
    """The probe's policy: payments restricted, its public mirror and docs public; public
    may go to the cloud then corp, internal to corp (``expires``: an ISO time or none)."""
    builder = (
        PolicyBuilder("leak-regressions", default_label=default, extra=STRIPE_DETECTOR)
        .repo("github.com/acme/payments", "restricted")
        .repo("github.com/acme/open-payments-mirror", "public")
        .repo("github.com/acme/docs", "public")
        .destination(
            "cloud",
            kind="openai",
            base_url=f"{cloud.url}/v1",
            model="cloud-coder",
            clearance="public",
            fim=True,
            timeout=20.0,
        )
        .destination(
            "corp",
            kind="anthropic",
            base_url=corp.url,
            model="corp-coder",
            clearance="internal",
            timeout=20.0,
        )
        .route("public", "cloud", "corp")
        .route("internal", "corp")
    )
    if expires is not None:
        builder.policy(expires=expires)
    builder.write(path)


def make_repo(root: Path, remote: str) -> Path:
    """A git working tree whose origin is ``remote``."""
    root.mkdir(parents=True)
    git(root, "init", "-q")
    git(root, "remote", "add", "origin", remote)
    return root


@asynccontextmanager
async def serving(
    env: dict[str, str], root: Path, policy: dict[str, Any], journal: Path, client_name: str
) -> AsyncIterator[LanguageClient]:
    """``onbox serve`` with ``policy`` settings, the probe's journal and the model off."""
    config = ClientServerConfig(
        server_command=SERVER_COMMAND, client_factory=make_client, server_env=env
    )
    client = cast(LanguageClient, await config.start())
    try:
        await client.initialize_session(
            types.InitializeParams(
                capabilities=client_capabilities(client_name),
                root_uri=root.as_uri(),
                initialization_options={
                    "policy": policy,
                    "journal": {"dir": str(journal)},
                    "model": {"path": str(root / "no-model-here.gguf")},
                    "completion": {"maxTokens": 8, "debounceMs": 0},
                },
            )
        )
        yield client
    finally:
        await client.shutdown_session()
        await client.stop()  # type: ignore[no-untyped-call]


@pytest_asyncio.fixture
async def started(
    tmp_path: Path, probe: Probe, onbox_env: dict[str, str]
) -> AsyncIterator[LanguageClient]:
    """``onbox serve`` on the probe's policy, model off, watching signal files."""
    policy = {"path": str(probe.policy)}
    async with serving(onbox_env, tmp_path, policy, probe.journal, "neovim") as client:
        assert (await wait_ready(client))["state"] == "disabled"
        yield client


async def label_of(client: LanguageClient, uri: str, text: str, language: str = "python") -> str:
    """Open ``uri`` and return the label its first status announces."""
    open_doc(client, uri, text, language)
    status = await wait_for_status(client, lambda p: p.get("uri") == uri and "label" in p)
    return str(status["label"])


async def complete_at_end(client: LanguageClient, uri: str, text: str) -> Any:
    """An inline completion at the end of ``text``."""
    lines = text.split("\n")
    return await client.text_document_inline_completion_async(
        inline_params(uri, len(lines) - 1, len(lines[-1]))
    )


# -- 1. an origin with two URLs ---------------------------------------------------------


async def test_an_origin_with_a_second_url_does_not_lower_the_label(
    tmp_path: Path, probe: Probe, started: LanguageClient
) -> None:
    repo = make_repo(tmp_path / "payments", "git@github.com:acme/payments.git")
    git(
        repo, "remote", "set-url", "--add", "origin", "git@github.com:acme/open-payments-mirror.git"
    )
    canary = "CANARY_TWO_URLS_1a2b"
    text = f"# {canary}\ndef charge(amount):\n    "
    uri = (repo / "charge.py").as_uri()
    (repo / "charge.py").write_text(text)
    assert await label_of(started, uri, text) == "restricted"
    await complete_at_end(started, uri, text)
    probe.assert_never_sent(canary)
    assert "charge.py" not in probe.egress_paths()


# -- 2. a marker after a long first line ------------------------------------------------


async def test_a_marker_on_line_two_after_a_long_line_counts(
    tmp_path: Path, probe: Probe, started: LanguageClient
) -> None:
    repo = make_repo(tmp_path / "docs", "git@github.com:acme/docs.git")
    names = ", ".join(f'"name_{i:04d}"' for i in range(450))  # a ~4.5 KB first line
    canary = "CANARY_LONG_LINE_3c4d"
    text = f"__all__ = [{names}]\n# onbox: restricted\n# {canary}\ndef f():\n    "
    assert len(text.split("\n", 1)[0]) > 4096
    (repo / "exports.py").write_text(text)
    uri = (repo / "exports.py").as_uri()
    assert await label_of(started, uri, text) == "restricted"
    await complete_at_end(started, uri, text)
    probe.assert_never_sent(canary)


# -- 3. the editor's languageId, on a large extensionless script ------------------------


async def test_language_id_decides_the_grammar_for_the_whole_document(
    tmp_path: Path, probe: Probe, started: LanguageClient
) -> None:
    repo = make_repo(tmp_path / "docs", "git@github.com:acme/docs.git")
    (repo / "bin").mkdir()
    canary = "CANARY_LANGUAGE_ID_5e6f"
    filler = "".join(f"def step_{i}(x):\n    return x + {i}\n\n" for i in range(1500))
    text = f"import stripe\n# {canary}\n{filler}def last(x):\n    "
    assert len(text) > 40_000  # the import is far outside the prompt window
    script = repo / "bin" / "charge-customers"
    script.write_text(text)
    uri = script.as_uri()
    assert await label_of(started, uri, text, language="python") == "restricted"
    await complete_at_end(started, uri, text)
    probe.assert_never_sent(canary)
    probe.assert_never_sent("import stripe")


# -- 5. a file relabelled while its request waits ---------------------------------------


async def test_a_request_queued_before_a_relabel_does_not_leave(
    tmp_path: Path, probe: Probe, started: LanguageClient
) -> None:
    repo = make_repo(tmp_path / "docs", "git@github.com:acme/docs.git")
    slow_text = "def slow(a):\n    "
    race_text = "# CANARY_RACE_7a8b\ndef race(a):\n    "
    (repo / "slow.py").write_text(slow_text)
    (repo / "race.py").write_text(race_text)
    slow_uri, race_uri = (repo / "slow.py").as_uri(), (repo / "race.py").as_uri()
    assert await label_of(started, slow_uri, slow_text) == "public"
    assert await label_of(started, race_uri, race_text) == "public"

    # The first request is held by the cloud; the second queues behind it on the
    # server's model thread, labelled public when it was made.
    probe.cloud.push(Fault.TIMEOUT)
    held = asyncio.ensure_future(complete_at_end(started, slow_uri, slow_text))
    await _until(lambda: len(probe.cloud.requests) == 1)
    queued = asyncio.ensure_future(complete_at_end(started, race_uri, race_text))
    await asyncio.sleep(0.5)  # let it queue; arriving later only makes the test easier
    seen = probe.counts()

    (repo / ".gitattributes").write_text("race.py onbox-label=restricted\n")
    started.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams(
            changes=[
                types.FileEvent(
                    uri=(repo / ".gitattributes").as_uri(), type=types.FileChangeType.Created
                )
            ]
        )
    )
    await wait_for_status(
        started, lambda p: p.get("uri") == race_uri and p.get("label") == "restricted"
    )
    probe.cloud.release()
    await asyncio.wait_for(asyncio.gather(held, queued), 60)
    probe.assert_never_sent("CANARY_RACE_7a8b", since=seen)
    assert "race.py" not in probe.egress_paths()


# -- 6. a signed policy applied while a request waits ------------------------------------


async def test_a_request_queued_before_a_policy_swap_does_not_leave(
    tmp_path: Path, probe: Probe
) -> None:
    env = {
        **os.environ,
        "ONBOX_DATA_DIR": str(tmp_path / "data"),
        "ONBOX_CONFIG_DIR": str(tmp_path / "config"),
        "ONBOX_TRUST_ROOT": str(tmp_path / "data" / "trust-root.json"),
    }
    desk = tmp_path / "admin"
    desk.mkdir()

    def onbox(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "onbox", *args], cwd=desk, env=env, capture_output=True,
            text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"

    onbox("admin", "keygen", "--out", "admin")
    onbox("admin", "trust-root", "init", "--key", "admin.pub", "--threshold", "1",
          "--out", "root.json")  # fmt: skip
    onbox("admin", "trust-root", "install", "root.json")

    def sign(serial: int, docs_label: str) -> Path:
        toml = desk / f"policy-{serial}.toml"
        write_policy(toml, probe.cloud, probe.corp)
        toml.write_text(
            toml.read_text().replace(
                'match = "github.com/acme/docs"\nlabel = "public"',
                f'match = "github.com/acme/docs"\nlabel = "{docs_label}"',
            )
        )
        out = desk / f"serial-{serial}.onbox-policy"
        onbox("policy", "sign", str(toml), "--key", "admin.key", "--serial", str(serial),
              "--expires", "2099-01-01", "--out", str(out))  # fmt: skip
        return out

    dropbox = tmp_path / "dropbox"
    dropbox.mkdir()
    (dropbox / "serial-1.onbox-policy").write_bytes(sign(1, "public").read_bytes())
    serial2 = sign(2, "restricted")

    repo = make_repo(tmp_path / "docs", "git@github.com:acme/docs.git")
    slow_text = "def slow(a):\n    "
    race_text = "# CANARY_SWAP_9c0d\ndef race(a):\n    "
    (repo / "slow.py").write_text(slow_text)
    (repo / "race.py").write_text(race_text)
    slow_uri, race_uri = (repo / "slow.py").as_uri(), (repo / "race.py").as_uri()

    policy = {"sources": [str(dropbox)], "pullMinutes": 15}
    async with serving(env, tmp_path, policy, probe.journal, "visual-studio-code") as client:
        open_doc(client, slow_uri, slow_text)
        open_doc(client, race_uri, race_text)
        await wait_for_status(
            client,
            lambda p: (
                p.get("uri") == race_uri
                and p.get("label") == "public"
                and part(p.get("policy"), "serial") == 1
            ),
        )
        probe.cloud.push(Fault.TIMEOUT)
        held = asyncio.ensure_future(complete_at_end(client, slow_uri, slow_text))
        await _until(
            lambda: len(probe.cloud.requests) == 1,
            context=lambda: (held.done() and held.result(), client.statuses[-3:], probe.counts()),
        )
        queued = asyncio.ensure_future(complete_at_end(client, race_uri, race_text))
        await asyncio.sleep(0.5)  # let it queue; arriving later only makes the test easier
        seen = probe.counts()

        tmp = dropbox / ".serial-2.tmp"
        tmp.write_bytes(serial2.read_bytes())
        tmp.rename(dropbox / "serial-2.onbox-policy")
        await wait_for_status(
            client,
            lambda p: (
                p.get("uri") == race_uri
                and p.get("label") == "restricted"
                and part(p.get("policy"), "serial") == 2
            ),
        )
        probe.cloud.release()
        await asyncio.wait_for(asyncio.gather(held, queued), 60)
    probe.assert_never_sent("CANARY_SWAP_9c0d", since=seen)
    for entry in iter_entries(probe.journal):
        if entry["kind"] == "egress" and entry["body"]["path"] == "race.py":
            raise AssertionError(f"race.py left under policy serial {entry['body']['policy']}")


# -- 7. an expired local policy --------------------------------------------------------


async def test_an_expired_policy_fails_closed_whatever_its_default(
    tmp_path: Path, probe: Probe, onbox_env: dict[str, str]
) -> None:
    past = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_policy(probe.policy, probe.cloud, probe.corp, default="internal", expires=past)
    repo = make_repo(tmp_path / "payments", "git@github.com:acme/payments.git")
    text = "# CANARY_EXPIRED_1e2f\ndef charge(a):\n    "
    (repo / "charge.py").write_text(text)
    uri = (repo / "charge.py").as_uri()
    policy = {"path": str(probe.policy)}
    async with serving(onbox_env, tmp_path, policy, probe.journal, "neovim") as client:
        assert await label_of(client, uri, text) == "restricted"
        await complete_at_end(client, uri, text)
    probe.assert_never_sent("CANARY_EXPIRED_1e2f")


async def _until(condition: Any, timeout: float = 30.0, context: Any = None) -> None:
    """Poll a condition another thread makes true (the recording server's request list)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out ({context() if context else ''})"
        await asyncio.sleep(0.02)


# -- 4. `onbox complete` on an extensionless script ---------------------------------------


def _onbox_complete(target: Path, probe: Probe, env: dict[str, str], model: Path) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "onbox", "complete", "--json", "--policy", str(probe.policy),
         "--model", str(model), f"{target}:3:end"],
        env={**env, "ONBOX_JOURNAL_DIR": str(probe.journal)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_onbox_complete_knows_an_extensionless_script_by_its_shebang(
    tmp_path: Path, probe: Probe, onbox_env: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "docs", "git@github.com:acme/docs.git")
    (repo / "bin").mkdir()
    missing_model = tmp_path / "no-model-here.gguf"
    plain = repo / "bin" / "greet"
    plain.write_text("#!/usr/bin/env python3\n# CANARY_PLAIN_SCRIPT\ndef greet():\n    ")
    # Control: the same kind of script without the import is public and goes to the cloud.
    done = _onbox_complete(plain, probe, onbox_env, missing_model)
    assert done.returncode == 0, done.stderr
    assert b"CANARY_PLAIN_SCRIPT" in b"".join(probe.bodies())

    script = repo / "bin" / "charge-customers"
    script.write_text(
        "#!/usr/bin/env python3\nimport stripe\n# CANARY_SHEBANG_3a4b\ndef f():\n    "
    )
    done = _onbox_complete(script, probe, onbox_env, missing_model)
    # Restricted, on-box only, and there is no on-box model here: an environment error.
    assert done.returncode == 3, done.stdout + done.stderr
    probe.assert_never_sent("CANARY_SHEBANG_3a4b")
