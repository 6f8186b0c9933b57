"""What the documentation tells users is true of this repository.

Each test checks one kind of claim against the thing it describes: links point at files
that exist, install instructions never name a package on a public index, the sample in
the README is the one the sample file describes, and the journal bodies documented for
the server's own entries are the ones it writes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from onbox.audit import iter_entries
from onbox.server.settings import Settings
from onbox.server.wiring import Wiring

ROOT = Path(__file__).resolve().parents[2]

#: Everything a user reads: docs, READMEs, editor help, and the editors' own messages.
USER_FACING = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "editors" / "vscode" / "README.md",
    ROOT / "editors" / "vscode" / "package.json",
    *sorted((ROOT / "editors" / "vscode" / "src").glob("*.ts")),
    ROOT / "editors" / "nvim" / "README.md",
    ROOT / "editors" / "nvim" / "doc" / "onbox.txt",
    *sorted((ROOT / "editors" / "nvim" / "lua").rglob("*.lua")),
]
MARKDOWN = [p for p in USER_FACING if p.suffix == ".md"]


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_in_the_repository(path: Path) -> None:
    text = path.read_text("utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        resolved = (path.parent / target.split("#", 1)[0]).resolve()
        assert resolved.exists(), f"{path.relative_to(ROOT)} links {target}, which is missing"
        assert ROOT in resolved.parents or resolved == ROOT, f"{target} leaves the repository"


@pytest.mark.parametrize("path", USER_FACING, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_install_from_a_public_index_by_name(path: Path) -> None:
    # Onbox is not on PyPI: whoever registers the name decides what runs (dependency
    # confusion). Installs come from a checkout or the company's own wheel.
    text = path.read_text("utf-8")
    assert not re.search(r"pip3? install (-U |--upgrade )?onbox\b(?![-\w./])", text), path


def test_readme_sample_is_the_one_the_sample_file_names() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    sample = (ROOT / "examples" / "billing.py").read_text("utf-8")
    named = re.search(r"onbox complete (examples/billing\.py:\d+:\w+)", readme)
    assert named is not None
    docstring = sample.split('"""')[1]
    assert f"onbox complete {named.group(1)}" in docstring
    line = int(named.group(1).split(":")[1])
    assert sample.splitlines()[line - 1].strip() == "", "the sample completes an empty line"


def test_vscode_policy_path_is_described_as_what_it_is() -> None:
    manifest = json.loads((ROOT / "editors" / "vscode" / "package.json").read_text("utf-8"))
    prop = manifest["contributes"]["configuration"]["properties"]["onbox.policy.path"]
    text = prop.get("markdownDescription") or prop["description"]
    assert "TOML" in text and "trust root" in text
    assert "signed policy bundle file" not in text


def test_vscode_doc_says_how_to_install_the_vsix() -> None:
    for path in (ROOT / "docs" / "vscode.md", ROOT / "editors" / "vscode" / "README.md"):
        assert "code --install-extension dist/onbox.vsix" in path.read_text("utf-8"), path


def documented_body(kind: str) -> set[str]:
    """The body fields docs/journal.md lists for ``kind`` (top-level names only)."""
    text = (ROOT / "docs" / "journal.md").read_text("utf-8")
    row = re.search(rf"^\| `{re.escape(kind)}` \|[^|]*\|(.*)\|$", text, re.MULTILINE)
    assert row is not None, f"docs/journal.md has no row for {kind}"
    return set(re.findall(r"`(\w+)(?: \{[^}]*\})?`", row.group(1)))


def test_server_start_body_is_as_documented(tmp_path: Path) -> None:
    settings = Settings()
    settings.journal.dir = str(tmp_path / "journal")
    wiring = Wiring(settings)
    wiring.start()
    wiring.stop()
    bodies = {e["kind"]: e["body"] for e in iter_entries(tmp_path / "journal")}
    for kind in ("server-start", "server-stop"):
        written = set(bodies[kind]) - {"actor"}  # actor is documented for every entry
        assert written == documented_body(kind), kind
    policy = bodies["server-start"]["policy"]
    assert set(policy) == {"id", "serial", "expires", "expired", "warning", "source"}


def test_label_changed_body_is_as_documented(tmp_path: Path) -> None:
    """The ``label-changed`` entry, built as the server builds it when the label it shows
    changes (status payloads → :func:`label_change` → the journal), has the fields
    docs/journal.md lists, and the row names the file that writes it."""
    from onbox.classification.decision import Decision, Reason
    from onbox.classification.labels import Label
    from onbox.server.status import ServerState, label_change, status_payload

    uri = "file:///repo/app.py"

    def shown(name: str, rank: int) -> dict[str, object]:
        label = Label(rank, name)
        decision = Decision(label, (Reason("repo-tag", label, f"tag says {name}"),), "p")
        return status_payload(
            uri,
            state=ServerState.READY,
            message="",
            model="m.gguf",
            decision=decision,
            destination="on-box",
            destination_kind="llama-cpp",
        )

    changed = label_change(shown("public", 0), shown("restricted", 2))
    assert changed is not None
    assert label_change(shown("public", 0), shown("public", 0)) is None  # no change, no entry
    settings = Settings()
    settings.journal.dir = str(tmp_path / "journal")
    wiring = Wiring(settings)
    try:
        assert wiring.journal_event("label-changed", changed)
    finally:
        wiring.stop()
    body = next(
        e["body"] for e in iter_entries(tmp_path / "journal") if e["kind"] == "label-changed"
    )
    assert set(body) - {"actor"} == documented_body("label-changed")
    assert (body["uri"], body["from"], body["to"]) == (uri, "public", "restricted")
    assert "actor" in body

    text = (ROOT / "docs" / "journal.md").read_text("utf-8")
    row = re.search(r"^\| `label-changed` \|([^|]*)\|", text, re.MULTILINE)
    assert row is not None
    writer = re.search(r"`([\w/]+\.py)`", row.group(1))
    assert writer is not None, "the row should name the file that writes the entry"
    assert '"label-changed"' in (ROOT / writer.group(1)).read_text("utf-8")
