"""The real ``onbox serve`` ships its journal to a real collector named by the policy.

Two editor windows (two ``onbox serve`` processes, one journal) start against a policy
whose ``[audit] collector_url`` is a collector on loopback (trust on first use); the
collector must end up holding the device's chain, both ``server-start`` entries with
their ``actor``, and no entry twice.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import cast

import httpx
import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from tests.e2e.lsp_support import SERVER_COMMAND, make_client
from tests.support.collector import running_collector
from tests.support.policies import PolicyBuilder

pytestmark = [pytest.mark.model, pytest.mark.slow]


def _policy(url: str) -> str:
    """Restricted by default; the journal ships to ``url`` about every second."""
    audit = f'[audit]\ncollector_url = "{url}"\nship_minutes = 0.02\n'
    return PolicyBuilder("e2e-shipping", extra=audit).toml()


async def _start(env: dict[str, str], root: Path, policy: Path) -> LanguageClient:
    config = ClientServerConfig(
        server_command=SERVER_COMMAND, client_factory=make_client, server_env=env
    )
    client = cast(LanguageClient, await config.start())
    await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("neovim"),
            root_uri=root.as_uri(),
            initialization_options={"policy": {"path": str(policy)}},
        )
    )
    return client


async def test_two_servers_ship_one_journal_to_the_policy_collector(
    tmp_path: Path, default_model: Path
) -> None:
    env = {
        **os.environ,
        "ONBOX_DATA_DIR": str(tmp_path / "data"),
        "ONBOX_CONFIG_DIR": str(tmp_path / "config"),
        "ONBOX_TRUST_ROOT": str(tmp_path / "no-trust-root.json"),
    }
    db = f"sqlite:///{tmp_path / 'collector.db'}"
    with running_collector(db, tmp_path / "collector", "--trust-on-first-use") as collector:
        policy = tmp_path / "policy.toml"
        policy.write_text(_policy(collector.url))
        clients = [await _start(env, tmp_path, policy) for _ in range(2)]
        try:
            deadline = time.monotonic() + 120
            while True:  # the servers ship on their own timers; poll the collector
                starts = httpx.get(
                    collector.url + "/v1/entries", params={"kind": "server-start", "full": "1"}
                ).json()
                if len(starts) >= 2 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
        finally:
            for client in clients:
                await client.shutdown_session()
                await client.stop()  # type: ignore[no-untyped-call]
        assert len(starts) == 2, starts
        assert len({s["device"] for s in starts}) == 1  # one journal, one device
        for start in starts:
            assert start["entry"]["body"]["actor"]["osUser"] == start["os_user"]
            assert start["entry"]["body"]["policy"]["id"] == "e2e-shipping"
        (device,) = httpx.get(collector.url + "/v1/devices").json()
        assert device["chain"] == "unknown-device"  # admitted on first use, and flagged
        assert device["entries"] == device["head_seq"] + 1  # contiguous, nothing twice
