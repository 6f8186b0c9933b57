"""Labels follow repo-local signals live: a changed .gitattributes or CODEOWNERS re-labels open files."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from tests.e2e.lsp_support import SERVER_COMMAND, make_client, open_doc, wait_for_status, wait_ready

POLICY = """
[policy]
id = "relabel"
default_label = "restricted"

[[repos]]
match = "github.com/acme/web"
label = "public"

[owners]
"@acme/payments" = "restricted"
"""


async def test_attribute_and_codeowners_changes_relabel_open_document(tmp_path: Path) -> None:
    repo = tmp_path / "web"
    (repo / "src").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "remote", "add", "origin", "https://github.com/acme/web.git"],
        check=True,
    )
    (repo / "src" / "pay.py").write_text("def pay():\n    pass\n")
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    config = ClientServerConfig(server_command=SERVER_COMMAND, client_factory=make_client)
    client: LanguageClient = await config.start()
    try:
        await client.initialize_session(
            types.InitializeParams(
                capabilities=client_capabilities("neovim"),
                root_uri=repo.as_uri(),
                initialization_options={
                    "policy": {"path": str(policy)},
                    "model": {"path": str(tmp_path / "none.gguf")},
                },
            )
        )
        await wait_ready(client)
        uri = (repo / "src" / "pay.py").as_uri()
        open_doc(client, uri, (repo / "src" / "pay.py").read_text())
        status = await wait_for_status(client, lambda p: p.get("uri") == uri and "label" in p)
        assert status["label"] == "public"

        # CODEOWNERS appears: the editor's file watcher reports it.
        (repo / ".github").mkdir()
        (repo / ".github" / "CODEOWNERS").write_text("src/pay.py @acme/payments\n")
        client.workspace_did_change_watched_files(
            types.DidChangeWatchedFilesParams(
                changes=[
                    types.FileEvent(
                        uri=(repo / ".github" / "CODEOWNERS").as_uri(),
                        type=types.FileChangeType.Created,
                    )
                ]
            )
        )
        status = await wait_for_status(
            client, lambda p: p.get("uri") == uri and p.get("label") == "restricted"
        )
        assert any("codeowners" in r for r in status["reasons"])

        # CODEOWNERS removed again, then a .gitattributes marks the folder internal... saved in the editor.
        (repo / ".github" / "CODEOWNERS").unlink()
        (repo / ".gitattributes").write_text("src/** onbox-label=internal\n")
        client.text_document_did_save(
            types.DidSaveTextDocumentParams(
                text_document=types.TextDocumentIdentifier(uri=(repo / ".gitattributes").as_uri())
            )
        )
        status = await wait_for_status(
            client, lambda p: p.get("uri") == uri and p.get("label") == "internal"
        )
        assert any("path-attribute" in r for r in status["reasons"])
    finally:
        await client.shutdown_session()
        await client.stop()
