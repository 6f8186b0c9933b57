"""The real ``onbox serve`` on a managed workstation writes its journal where the signed
policy says, ignores the editor's ``journal.dir``, and says so in ``onbox/health``.

The trust root and the signed policy are installed the way ``onbox admin`` and a policy
pull leave them (a real Ed25519-signed bundle applied through the policy store). No
model is needed: the journal is opened at ``initialize``, before any completion.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from onbox.audit import iter_entries
from onbox.classification.bundle import make_bundle
from onbox.classification.policy_store import PolicyStore
from onbox.classification.trust import TrustRoot
from tests.e2e.lsp_support import SERVER_COMMAND, make_client, part, request

POLICY = """\
[policy]
id = "acme-managed"
labels = ["public", "restricted"]
default_label = "restricted"

[routes]
public = ["on-box"]
restricted = ["on-box"]

[audit]
journal_dir = "$ONBOX_E2E_AUDIT_ROOT/journal"
"""


async def test_managed_serve_journals_where_the_signed_policy_says(tmp_path: Path) -> None:
    data, trust_root = tmp_path / "data", tmp_path / "trust-root.json"
    key = Ed25519PrivateKey.generate()
    trust_root.write_bytes(TrustRoot.create([key.public_key()], 1).to_bytes())
    now = datetime.now(UTC)
    bundle = make_bundle(POLICY.encode(), 1, now + timedelta(days=7), [key], now)
    store = PolicyStore(data / "policy", trust_root_path=trust_root)
    assert store.apply(bundle.to_bytes(), "test").applied

    env = {
        **os.environ,
        "ONBOX_DATA_DIR": str(data),
        "ONBOX_CONFIG_DIR": str(tmp_path / "config"),
        "ONBOX_TRUST_ROOT": str(trust_root),
        "ONBOX_E2E_AUDIT_ROOT": str(tmp_path / "audit"),
    }
    env.pop("ONBOX_JOURNAL_DIR", None)
    developer_choice = tmp_path / "developer-choice"
    config = ClientServerConfig(
        server_command=SERVER_COMMAND, client_factory=make_client, server_env=env
    )
    client = cast(LanguageClient, await config.start())
    try:
        await client.initialize_session(
            types.InitializeParams(
                capabilities=client_capabilities("neovim"),
                initialization_options={
                    "journal": {"dir": str(developer_choice)},
                    "model": {"path": str(tmp_path / "no-model.gguf")},
                },
            )
        )
        journal = part(await request(client, "onbox/health", {}), "journal")
        assert part(journal, "dir") == str(tmp_path / "audit" / "journal")
        assert part(journal, "source") == "machine policy"
        assert part(journal, "writable") is True
        assert "onbox.journal.dir" in part(journal, "note")
        assert "ignored on a managed workstation" in part(journal, "note")
    finally:
        await client.shutdown_session()
        await client.stop()  # type: ignore[no-untyped-call]
    kinds = [e["kind"] for e in iter_entries(tmp_path / "audit" / "journal")]
    assert "server-start" in kinds and "server-stop" in kinds
    assert not developer_choice.exists()
