"""``onbox journal`` / ``onbox keys`` commands and export bundles verified elsewhere."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from onbox.audit import generate_recipient_key, open_journal, verify_journal
from onbox.server.cli import main


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ONBOX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ONBOX_JOURNAL_DIR", str(tmp_path / "journal"))
    return tmp_path


def _fill(count: int, **kwargs: Any) -> str:
    with open_journal(segment_max_bytes=3000, **kwargs) as journal:
        for i in range(count):
            journal.append("completion", {"completion_id": f"c{i}", "outcome": "served"})
        return str(journal.device_fingerprint)


def _json_out(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict[str, object]]:
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_verify_exit_codes_and_located_error(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    device = _fill(30)
    code, result = _json_out(capsys, ["journal", "verify", "--json", "--key", device])
    assert code == 0 and result["ok"] is True
    path = env / "journal" / "segment-00000002.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"outcome":"served"', b'"outcome":"served!"')
    path.write_bytes(b"".join(lines))
    code, result = _json_out(capsys, ["journal", "verify", "--json"])
    assert code == 1
    assert result["first_error"]["segment"] == "segment-00000002.jsonl"  # type: ignore[index]
    assert result["first_error"]["line"] == 3  # type: ignore[index]
    assert main(["journal", "verify", str(env / "nowhere")]) == 2
    assert main(["journal", "verify", "--key", "0" * 32]) == 1


def test_export_bundle_verifies_on_another_machine(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device = _fill(30)
    bundle = env / "export.tar"
    assert main(["journal", "export", "--out", str(bundle)]) == 0
    capsys.readouterr()
    elsewhere = env / "security-team" / "bundle.tar"
    elsewhere.parent.mkdir()
    shutil.copy(bundle, elsewhere)
    code, result = _json_out(
        capsys, ["journal", "verify", "--json", "--key", device, str(elsewhere)]
    )
    assert code == 0 and result["ok"] is True and result["checkpoint_seq"] == result["head_seq"]


def _rewrite_member(bundle: Path, name: str, change: object) -> None:
    with tarfile.open(bundle) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    members[name] = change(members[name])  # type: ignore[operator]
    with tarfile.open(bundle, "w") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_tampered_or_shortened_bundle_is_located(env: Path) -> None:
    _fill(30)
    bundle = env / "export.tar"
    with open_journal() as journal:
        from onbox.audit import export_bundle

        export_bundle(journal, bundle)
    tampered = env / "tampered.tar"
    shutil.copy(bundle, tampered)
    _rewrite_member(
        tampered,
        "segments/segment-00000002.jsonl",
        lambda d: d.replace(b'"completion_id":"c', b'"completion_id":"C', 1),
    )
    result = verify_journal(tampered, workers=1)
    assert not result.ok and result.first_error is not None
    assert (result.first_error.segment, result.first_error.line) == ("segment-00000002.jsonl", 2)
    # dropping the last segment from the bundle is caught by the signed checkpoint
    with tarfile.open(bundle) as tar:
        names = sorted(m.name for m in tar.getmembers() if m.name.startswith("segments/"))
    shortened = env / "short.tar"
    shutil.copy(bundle, shortened)
    _rewrite_member(shortened, names[-1], lambda d: d[: d.rstrip(b"\n").rfind(b"\n") + 1])
    result = verify_journal(shortened, workers=1)
    assert not result.ok and result.first_error is not None


def test_partial_export_since_keeps_the_key_chain(env: Path) -> None:
    now = [datetime(2026, 11, 20, 12, tzinfo=UTC)]
    with open_journal(clock=lambda: now[0], forward_secure=True) as journal:
        device = journal.device_fingerprint
        for day in range(4):
            for i in range(5):
                journal.append("completion", {"day": day, "n": i})
            now[0] += timedelta(days=1)
        from onbox.audit import export_bundle

        manifest = export_bundle(
            journal, env / "recent.tar", since=datetime(2026, 11, 22, tzinfo=UTC)
        )
    assert manifest["first_segment"] > 1
    result = verify_journal(env / "recent.tar", expected_fingerprint=device, workers=1)
    assert result.ok, result.first_error
    assert any("bundle starts here" in n.what for n in result.notes)


def test_verify_against_an_earlier_bundle_detects_rollback(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(10)
    backup = env / "backup"
    shutil.copytree(env / "journal", backup)
    _fill(10)
    assert main(["journal", "export", "--out", str(env / "b.tar")]) == 0
    shutil.rmtree(env / "journal")
    shutil.copytree(backup, env / "journal")
    capsys.readouterr()
    assert main(["journal", "verify", "--checkpoint", str(env / "b.tar")]) == 1
    assert "older copy" in capsys.readouterr().out


def test_keys_show_rotate_and_decrypt(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, shown = _json_out(capsys, ["keys", "show", "--json"])
    assert code == 0 and shown["device_fingerprint"] == shown["current_key"]
    code, rotated = _json_out(capsys, ["keys", "rotate", "--json", "--reason", "test"])
    assert code == 0 and rotated["previous_key"] == shown["current_key"] != rotated["current_key"]
    assert rotated["device_fingerprint"] == shown["device_fingerprint"]
    private, public = generate_recipient_key()
    (env / "team.key").write_text(private)
    with open_journal() as journal:
        envelope = journal.store_encrypted_prompt("secret prompt", public)
        seq = journal.append("egress", {"prompt_envelope": envelope}, durable=True).seq
    assert main(["journal", "decrypt", str(seq), "--private-key", str(env / "team.key")]) == 0
    assert capsys.readouterr().out == "secret prompt"


def test_stats_and_show(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with open_journal() as journal:
        journal.append(
            "egress",
            {"destination": {"name": "cloud", "kind": "openai"}, "label": "public"},
            durable=True,
        )
    code, stats = _json_out(capsys, ["journal", "stats", "--json"])
    assert code == 0 and stats["egress"]["by_destination"] == {"cloud": 1}  # type: ignore[index]
    assert main(["journal", "show", "--json", "--kind", "egress"]) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["kind"] for e in shown] == ["egress"]
    assert main(["journal", "stats"]) == 0
    assert "cloud" in capsys.readouterr().out


def test_stats_read_an_export_bundle(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with open_journal(segment_max_bytes=2000) as journal:
        for i in range(20):
            journal.append(
                "egress",
                {"destination": {"name": "corp"}, "label": "internal", "n": i},
                durable=i == 19,
            )
    assert main(["journal", "export", "--out", str(env / "b.tar")]) == 0
    capsys.readouterr()
    code, stats = _json_out(capsys, ["journal", "stats", "--json", "--dir", str(env / "b.tar")])
    assert code == 0
    assert stats["egress"]["total"] == 20  # type: ignore[index]
    assert stats["egress"]["by_label"] == {"internal": 20}  # type: ignore[index]


def test_bundle_with_forged_segments_and_no_checkpoint_is_refused(
    env: Path, tmp_path: Path
) -> None:
    device = _fill(20)
    with open_journal() as journal:
        from onbox.audit import export_bundle

        export_bundle(journal, env / "real.tar")
    # an attacker builds a journal of their own and packs it with the device's key history
    with open_journal(tmp_path / "forged", device_key_dir=tmp_path / "attacker") as forged:
        for i in range(20):
            forged.append("completion", {"completion_id": f"c{i}", "outcome": "served"})
        export_bundle(forged, env / "forged.tar")
    with tarfile.open(env / "real.tar") as tar:
        history = tar.extractfile("keys.json").read()  # type: ignore[union-attr]
    _rewrite_member(env / "forged.tar", "keys.json", lambda _: history)
    result = verify_journal(env / "forged.tar", expected_fingerprint=device, workers=1)
    assert not result.ok and result.first_error is not None
    assert device in result.first_error.what
    with tarfile.open(env / "forged.tar") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    del members["checkpoint.json"]
    with tarfile.open(env / "nocheckpoint.tar", "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="no checkpoint"):
        verify_journal(env / "nocheckpoint.tar", workers=1)
    assert main(["journal", "verify", str(env / "nocheckpoint.tar")]) == 2
