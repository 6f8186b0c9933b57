"""Checkpoints against bundles, series of bundles, gaps, and the readers' filters.

Every journal here is real: written through ``onbox.audit.open_journal`` with a clock
that moves a day at a time, so that segments (and ``--since``/``--until`` exports) split
where the test wants.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from onbox.audit import export_bundle, load_checkpoint, open_journal, verify_journal
from onbox.audit.series import verify_series
from onbox.server.cli import main

DAY0 = datetime(2026, 11, 20, 12, tzinfo=UTC)


class Device:
    """A workstation's journal with a hand-driven clock."""

    def __init__(self, root: Path, *, forward_secure: bool = True) -> None:
        self.root = root
        self.forward_secure = forward_secure
        self.now = DAY0
        self.dir = root / "journal"
        self.keys = root / "data" / "keys"

    def write(self, days: int, per_day: int = 5) -> None:
        with self.open() as journal:
            for _ in range(days):
                for i in range(per_day):
                    journal.append("completion", {"n": i, "outcome": "served"})
                self.now += timedelta(days=1)

    def open(self) -> Any:
        return open_journal(
            self.dir,
            device_key_dir=self.keys,
            clock=self.clock,
            forward_secure=self.forward_secure,
        )

    def clock(self) -> datetime:
        return self.now

    def export(self, name: str, **kwargs: Any) -> Path:
        out = self.root / name
        with self.open() as journal:
            export_bundle(journal, out, **kwargs)
        return out

    def cut_newest(self, count: int) -> None:
        """Remove the newest ``count`` entries (an attacker hiding what was sent)."""
        newest = sorted(self.dir.glob("segment-*.jsonl"))[-1]
        lines = newest.read_bytes().splitlines(keepends=True)
        assert len(lines) > count
        newest.write_bytes(b"".join(lines[:-count]))

    @property
    def device(self) -> str:
        return str(json.loads((self.keys / "device.json").read_text())["device"])


@pytest.fixture
def device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Device]:
    monkeypatch.setenv("ONBOX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ONBOX_JOURNAL_DIR", str(tmp_path / "journal"))
    yield Device(tmp_path)


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# ----------------------------------------------------------------- one bundle, one checkpoint


def test_truncated_journal_exported_again_fails_against_the_older_checkpoint(
    device: Device, capsys: pytest.CaptureFixture[str]
) -> None:
    device.write(days=2)
    old = device.export("old.tar")
    recorded = load_checkpoint(old)["seq"]
    device.cut_newest(3)
    new = device.export("new.tar")
    result = verify_journal(new, checkpoint=load_checkpoint(old), workers=1)
    assert not result.ok and result.first_error is not None
    assert f"records seq {recorded}" in result.first_error.what
    assert "removed" in result.first_error.what
    code, out = _run(capsys, ["journal", "verify", str(new), "--checkpoint", str(old)])
    assert code == 1 and "FAILED" in out and f"seq {recorded}" in " ".join(out.split())


def test_ok_line_names_the_checkpoint_it_checked(
    device: Device, capsys: pytest.CaptureFixture[str]
) -> None:
    device.write(days=1)
    old = device.export("old.tar")
    checkpoint = load_checkpoint(old)
    device.write(days=1)
    new = device.export("new.tar")
    code, out = _run(capsys, ["journal", "verify", str(new), "--checkpoint", str(old)])
    assert code == 0, out
    assert f"checkpoint seq {checkpoint['seq']} of {checkpoint['time']} matches" in " ".join(
        out.split()
    )
    code, out = _run(capsys, ["journal", "verify", str(device.dir)])
    assert code == 0 and "no checkpoint given" in " ".join(out.split())


def test_until_bundle_ends_before_a_later_checkpoint_legitimately(device: Device) -> None:
    device.write(days=4)
    everything = device.export("all.tar")
    early = device.export("early.tar", until=DAY0 + timedelta(days=1, hours=1))
    checkpoint = load_checkpoint(everything)
    result = verify_journal(early, checkpoint=checkpoint, workers=1)
    assert result.ok, result.first_error
    assert result.head_seq < checkpoint["seq"] and result.until is not None
    assert result.checkpoint_note is not None and "--until" in result.checkpoint_note
    assert result.checkpoint_seq is None  # nothing in the bundle could be compared


def test_until_bundle_after_truncation_still_fails(device: Device) -> None:
    device.write(days=4)
    everything = device.export("all.tar")
    device.cut_newest(2)
    early = device.export("early.tar", until=DAY0 + timedelta(days=1, hours=1))
    result = verify_journal(early, checkpoint=load_checkpoint(everything), workers=1)
    assert not result.ok and result.first_error is not None
    assert "removed" in result.first_error.what


def test_forged_until_claim_is_rejected(device: Device, tmp_path: Path) -> None:
    """The --until end must be the bundle's *signed* claim, not an edited manifest."""
    device.write(days=4)
    everything = device.export("all.tar")
    device.cut_newest(2)
    plain = device.export("plain.tar")
    import io
    import tarfile

    with tarfile.open(plain) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    own = json.loads(members["checkpoint.json"])
    own["bundle"]["until"] = "2026-11-21T00:00:00+00:00"
    own["seq"] = load_checkpoint(everything)["seq"]
    members["checkpoint.json"] = json.dumps(own).encode()
    forged = tmp_path / "forged.tar"
    with tarfile.open(forged, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    result = verify_journal(forged, checkpoint=load_checkpoint(everything), workers=1)
    assert not result.ok and result.first_error is not None
    assert "signature" in result.first_error.what


def test_bundle_starting_after_the_checkpoint_reports_a_gap_not_a_rewrite(
    device: Device, capsys: pytest.CaptureFixture[str]
) -> None:
    device.write(days=1)
    first = device.export("first.tar")
    seen = load_checkpoint(first)["seq"]
    device.write(days=3)
    later = device.export("later.tar", since=DAY0 + timedelta(days=2, hours=1))
    result = verify_journal(later, checkpoint=load_checkpoint(first), workers=1)
    assert not result.ok and result.first_seq is not None and result.first_seq > seen + 1
    assert [(g.first_seq, g.last_seq) for g in result.gaps] == [(seen + 1, result.first_seq - 1)]
    assert "rewritten" not in str(result.first_error)
    command = result.gaps[0].command
    assert command.startswith("onbox journal export --since ") and "--until " in command
    code, out = _run(
        capsys, ["journal", "verify", "--json", str(later), "--checkpoint", str(first)]
    )
    shown = json.loads(out)
    assert code == 1 and shown["gaps"][0]["first_seq"] == seen + 1
    # the suggested export, run on the device, fills exactly that gap
    args = command.split()
    since, until = args[args.index("--since") + 1], args[args.index("--until") + 1]
    filler = device.export(
        "filler.tar",
        since=datetime.fromisoformat(since.replace("Z", "+00:00")),
        until=datetime.fromisoformat(until.replace("Z", "+00:00")),
    )
    series = verify_series([first, filler, later], workers=1)
    assert series.ok, (series.problems, series.gaps)


def test_bundle_continuing_right_after_the_checkpoint_is_linked(device: Device) -> None:
    device.forward_secure = False  # no key rotation between segments: the day starts one
    device.write(days=1)
    first = device.export("first.tar")
    with device.open() as journal:
        device.now += timedelta(days=1)
        journal.append("completion", {"n": 99})  # new day: a new segment starts here
    later = device.export("later.tar", since=device.now + timedelta(minutes=1))
    checkpoint = load_checkpoint(first)
    result = verify_journal(later, checkpoint=checkpoint, workers=1)
    assert result.first_seq == checkpoint["seq"] + 1
    assert result.ok, result.first_error
    assert result.checkpoint_note is not None and "continues" in result.checkpoint_note


# ----------------------------------------------------------------------------- series


def test_series_of_bundles_chains_and_lists_gaps(
    device: Device, capsys: pytest.CaptureFixture[str]
) -> None:
    device.write(days=2)
    a = device.export("a.tar")
    device.write(days=2)
    b = device.export("b.tar", since=DAY0 + timedelta(days=1, hours=1))  # overlaps a
    device.write(days=3)
    c = device.export("c.tar", since=DAY0 + timedelta(days=6, hours=1))  # skips days 4-5
    code, out = _run(capsys, ["journal", "verify", str(a), str(b)])
    assert code == 0 and "no gaps" in out, out
    code, out = _run(capsys, ["journal", "verify", "--json", str(c), str(a), str(b)])
    shown = json.loads(out)
    assert code == 1 and not shown["problems"], shown
    (gap,) = shown["gaps"]
    b_head = verify_journal(b, workers=1).head_seq
    c_first = verify_journal(c, workers=1).first_seq
    assert (gap["first_seq"], gap["last_seq"]) == (b_head + 1, (c_first or 0) - 1)
    code, out = _run(capsys, ["journal", "verify", str(a), str(b), str(c)])
    assert code == 1 and f"gap: seq {b_head + 1}–" in out and "INCOMPLETE" in out


def test_series_catches_a_history_rewritten_between_exports(device: Device) -> None:
    device.write(days=2)
    backup = device.root / "backup"
    shutil.copytree(device.root / "data", backup / "data")
    shutil.copytree(device.dir, backup / "journal")
    device.write(days=1)
    a = device.export("a.tar")
    # restore the older copy (journal and keys) and carry on: what a.tar holds is gone
    for name in ("data", "journal"):
        shutil.rmtree(device.root / name)
        shutil.copytree(backup / name, device.root / name)
    device.write(days=1, per_day=12)
    b = device.export("b.tar")
    series = verify_series([a, b], workers=1)
    assert not series.ok
    assert any("rewritten" in p.what for _, p in series.problems), series.problems


def test_series_catches_truncation_between_exports(device: Device) -> None:
    device.write(days=2)
    a = device.export("a.tar")
    device.cut_newest(2)
    device.now += timedelta(hours=1)
    b = device.export("b.tar")
    series = verify_series([a, b], workers=1)
    assert not series.ok
    assert any("removed" in p.what for _, p in series.problems), series.problems


def test_series_refuses_bundles_from_two_devices(device: Device, tmp_path: Path) -> None:
    device.write(days=1)
    a = device.export("a.tar")
    other = Device(tmp_path / "other")
    other.write(days=1)
    b = other.export("b.tar")
    series = verify_series([a, b], workers=1)
    assert not series.ok and "several devices" in series.problems[0][1].what


# -------------------------------------------------------------------- export elsewhere


def test_exporting_a_copied_journal_says_to_export_on_the_device(
    device: Device,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    device.write(days=1)
    copy = tmp_path / "copied"
    shutil.copytree(device.dir, copy)
    team = tmp_path / "team-data"
    monkeypatch.setenv("ONBOX_DATA_DIR", str(team))
    code, out = _run(
        capsys, ["journal", "export", "--dir", str(copy), "--out", str(tmp_path / "x.tar")]
    )
    text = " ".join(out.split())
    assert code == 2
    assert f"belongs to device {device.device}" in text
    assert "run `onbox journal export` on that device" in text
    assert f"onbox journal verify {copy} --key {device.device}" in text
    assert "Move the journal" not in text
    assert not (team / "keys").exists()  # no device key was minted on the team's machine
    assert not (tmp_path / "x.tar").exists()


# ------------------------------------------------------------------------- show / stats


def _egress(journal: Any, **fields: Any) -> None:
    body = {"destination": "cloud", "kind": "openai", "label": "public", "repo": "acme/web"}
    body["actor"] = {"osUser": "ann", "host": "ws1", "gitEmail": None}
    body.update(fields)
    journal.append("egress", body, durable=True)


def test_show_filters_and_device(device: Device, capsys: pytest.CaptureFixture[str]) -> None:
    with device.open() as journal:
        _egress(journal, path="src/app.py")
        device.now += timedelta(hours=2)
        _egress(
            journal,
            path="src/db/models.py",
            label="internal",
            destination="corp-vllm",
            actor={"osUser": "bob", "host": "ws2", "gitEmail": "bob@acme.test"},
        )
        device.now += timedelta(hours=2)
        _egress(
            journal,
            repo="acme/payments",
            path="pay.py",
            context=[{"repo": "acme/web", "path": "lib/util.py", "label": "public"}],
        )
        journal.append(
            "label-changed", {"uri": "file:///x.py", "from": "public", "to": "restricted"}
        )

    def show(*extra: str) -> list[dict[str, Any]]:
        code, out = _run(capsys, ["journal", "show", "--json", "--limit", "0", *extra])
        assert code == 0, out
        return [json.loads(line) for line in out.splitlines()]

    everything = show("--kind", "egress")
    assert len(everything) == 3 and {e["device"] for e in everything} == {device.device}
    assert [e["body"]["path"] for e in show("--label", "internal")] == ["src/db/models.py"]
    assert [e["kind"] for e in show("--label", "restricted")] == ["label-changed"]
    assert [e["body"]["path"] for e in show("--destination", "corp-vllm")] == ["src/db/models.py"]
    assert [e["body"]["path"] for e in show("--repo", "acme/payments")] == ["pay.py"]
    by_context = show("--kind", "egress", "--repo", "acme/web")
    assert [e["body"]["path"] for e in by_context] == ["src/app.py", "src/db/models.py", "pay.py"]
    assert [e["body"]["path"] for e in show("--path", "src/db/*")] == ["src/db/models.py"]
    assert [e["body"]["path"] for e in show("--path", "lib/util.py")] == ["pay.py"]
    assert [e["body"]["path"] for e in show("--user", "bob@acme.test")] == ["src/db/models.py"]
    assert len(show("--kind", "egress", "--user", "ann")) == 2
    until = (DAY0 + timedelta(hours=1)).isoformat()
    assert [e["body"]["path"] for e in show("--kind", "egress", "--until", until)] == ["src/app.py"]
    code, out = _run(capsys, ["journal", "show", "--kind", "bogus"])
    assert code == 2 and "bogus" in out and "egress" in out and "label-changed" in out


def test_stats_verifies_first(device: Device, capsys: pytest.CaptureFixture[str]) -> None:
    with device.open() as journal:
        _egress(journal)
        _egress(journal)
    code, out = _run(capsys, ["journal", "stats", "--json"])
    stats = json.loads(out)
    assert code == 0 and stats["verified"]["device"] == device.device
    assert stats["egress"]["total"] == 2
    segment = sorted(device.dir.glob("segment-*.jsonl"))[-1]
    segment.write_bytes(segment.read_bytes().replace(b'"label":"public"', b'"label":"PUBLIC"', 1))
    code, out = _run(capsys, ["journal", "stats", "--json"])
    assert code == 1 and "does not verify" in out
    code, out = _run(capsys, ["journal", "stats", "--json", "--no-verify"])
    assert code == 0 and json.loads(out)["verified"] is None
