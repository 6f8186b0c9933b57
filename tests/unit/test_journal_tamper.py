"""The tamper suite: every kind of tampering is detected AND located (segment, line, seq)."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from onbox.audit import open_journal, verify_journal
from onbox.audit.entry import seal
from onbox.audit.keys import DeviceKey

SEGMENT_BYTES = 2500


def _fill(
    directory: Path,
    keys: Path,
    count: int,
    *,
    rotate_at: int | None = None,
    forward_secure: bool = True,
) -> None:
    with open_journal(
        directory,
        device_key_dir=keys,
        segment_max_bytes=SEGMENT_BYTES,
        forward_secure=forward_secure,
    ) as journal:
        for i in range(count):
            if i == rotate_at:
                journal.rotate_key("test")
            journal.append(
                "completion",
                {
                    "completion_id": f"c{i}",
                    "outcome": "served",
                    "label": "internal",
                    "latency_s": 0.5,
                },
            )


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "journal"
    _fill(directory, tmp_path / "keys", 40, rotate_at=20)
    result = verify_journal(directory, workers=1)
    assert result.ok, result.first_error
    assert result.segments >= 4
    return directory


def seg(directory: Path, index: int) -> Path:
    return directory / f"segment-{index:08d}.jsonl"


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, content: list[bytes]) -> None:
    path.write_bytes(b"".join(content))


def seq_at(path: Path, line: int) -> int:
    return int(json.loads(lines(path)[line - 1])["seq"])


def assert_located(directory: Path, segment: int, line: int, **kwargs: Any) -> str:
    result = verify_journal(directory, workers=1, **kwargs)
    assert not result.ok
    problem = result.first_error
    assert problem is not None
    assert (problem.segment, problem.line) == (f"segment-{segment:08d}.jsonl", line), str(problem)
    return str(problem.what)


@pytest.mark.parametrize("field", ["seq", "time", "kind", "body", "prev", "key", "hash", "sig"])
def test_changed_field_is_located(journal_dir: Path, field: str) -> None:
    path = seg(journal_dir, 2)
    content = lines(path)
    entry = json.loads(content[2])
    value = json.dumps(entry[field], separators=(",", ":"))
    raw = content[2].decode()
    start = raw.index(f'"{field}":') + len(field) + 3
    assert raw[start : start + len(value)] == value
    # change one character inside the value, keeping the JSON well-formed
    offset = start + next(i for i, ch in enumerate(value) if ch.isalnum())
    ch = raw[offset]
    repl = {"0": "1", "9": "8", "a": "b", "z": "y", "A": "B", "Z": "Y"}.get(
        ch, "0" if ch.isalpha() else "7"
    )
    if ch.isdigit() and repl == "7" and ch == "7":
        repl = "6"
    content[2] = (raw[:offset] + repl + raw[offset + 1 :]).encode()
    json.loads(content[2])
    write_lines(path, content)
    assert_located(journal_dir, 2, 3)


@pytest.mark.parametrize("position", range(12))
def test_flipped_byte_anywhere_is_located(journal_dir: Path, position: int) -> None:
    path = seg(journal_dir, 3)
    content = lines(path)
    rng = random.Random(position)
    line = rng.randrange(len(content))
    data = bytearray(content[line])
    offset = rng.randrange(len(data) - 1)  # not the newline
    data[offset] ^= 1 << rng.randrange(7)
    content[line] = bytes(data)
    write_lines(path, content)
    assert_located(journal_dir, 3, line + 1)


def test_deleted_entry_is_located(journal_dir: Path) -> None:
    path = seg(journal_dir, 2)
    content = lines(path)
    missing = seq_at(path, 3)
    del content[2]
    write_lines(path, content)
    what = assert_located(journal_dir, 2, 3)
    assert f"from {missing - 1} to {missing + 1}" in what


def test_deleted_last_entry_of_a_segment_is_located_at_the_next_header(journal_dir: Path) -> None:
    path = seg(journal_dir, 2)
    write_lines(path, lines(path)[:-1])
    what = assert_located(journal_dir, 3, 1)
    assert "segment-00000002.jsonl" in what


def test_duplicated_entry_is_located(journal_dir: Path) -> None:
    path = seg(journal_dir, 2)
    content = lines(path)
    content.insert(3, content[2])
    write_lines(path, content)
    assert "duplicated" in assert_located(journal_dir, 2, 4)


def test_reordered_entries_are_located(journal_dir: Path) -> None:
    path = seg(journal_dir, 2)
    content = lines(path)
    content[2], content[3] = content[3], content[2]
    write_lines(path, content)
    assert_located(journal_dir, 2, 3)


def _forge_after(path: Path, line: int, key: DeviceKey, key_id: str | None = None) -> None:
    """Insert a well-formed entry after ``line`` that chains correctly but is signed by ``key``."""
    content = lines(path)
    before = json.loads(content[line - 1])
    forged, _ = seal(
        seq=before["seq"] + 1,
        time=before["time"],
        kind="egress",
        body={"destination": {"name": "evil"}, "label": "restricted"},
        prev=before["hash"],
        key=key,
        key_id=key_id,
    )
    content.insert(line, forged)
    write_lines(path, content)


def test_inserted_forged_entry_with_another_key_is_located(journal_dir: Path) -> None:
    _forge_after(seg(journal_dir, 2), 2, DeviceKey.generate())
    assert "key in effect" in assert_located(journal_dir, 2, 3)


def test_inserted_entry_claiming_the_device_key_is_located(journal_dir: Path) -> None:
    device_key = json.loads(lines(seg(journal_dir, 2))[1])["key"]
    _forge_after(seg(journal_dir, 2), 2, DeviceKey.generate(), key_id=device_key)
    assert "signature" in assert_located(journal_dir, 2, 3)


def _last_segment_named(result: Any) -> int:
    return int(result.first_error.segment[len("segment-") : -len(".jsonl")])


def _last_segment(directory: Path) -> int:
    return len(list(directory.glob("segment-*.jsonl")))


def test_truncation_at_entry_boundary_is_located_against_a_checkpoint(
    journal_dir: Path, tmp_path: Path
) -> None:
    with open_journal(journal_dir, device_key_dir=tmp_path / "keys") as journal:
        checkpoint = journal.checkpoint()
    last = _last_segment(journal_dir)
    path = seg(journal_dir, last)
    write_lines(path, lines(path)[:-2])
    assert verify_journal(journal_dir, workers=1).ok  # indistinguishable without a checkpoint
    what = assert_located(journal_dir, last, len(lines(path)), checkpoint=checkpoint)
    assert "older copy" in what


def test_truncation_mid_entry_is_located(journal_dir: Path) -> None:
    last = _last_segment(journal_dir)
    path = seg(journal_dir, last)
    data = path.read_bytes()
    path.write_bytes(data[:-30])
    assert "torn" in assert_located(journal_dir, last, len(lines(path)))


def test_truncate_then_keep_appending_is_detected_against_a_checkpoint(
    journal_dir: Path, tmp_path: Path
) -> None:
    with open_journal(journal_dir, device_key_dir=tmp_path / "keys") as journal:
        checkpoint = journal.checkpoint()
    last = _last_segment(journal_dir)
    path = seg(journal_dir, last)
    write_lines(path, lines(path)[:-3])
    _fill(journal_dir, tmp_path / "keys", 6)  # the writer happily continues from the cut
    assert verify_journal(journal_dir, workers=1).ok
    result = verify_journal(journal_dir, workers=1, checkpoint=checkpoint)
    assert not result.ok and result.first_error is not None
    assert result.first_error.seq == checkpoint["seq"]
    assert "differs from the checkpoint" in result.first_error.what
    located = [json.loads(x)["seq"] for x in lines(seg(journal_dir, _last_segment_named(result)))]
    assert located[result.first_error.line - 1] == checkpoint["seq"]


def test_truncate_mid_entry_then_append_leaves_a_located_recovery_record(
    journal_dir: Path, tmp_path: Path
) -> None:
    last = _last_segment(journal_dir)
    path = seg(journal_dir, last)
    path.write_bytes(path.read_bytes()[:-25])
    cut_line = len(lines(path))  # the torn line's number
    _fill(journal_dir, tmp_path / "keys", 2)
    result = verify_journal(journal_dir, workers=1)
    assert result.ok, result.first_error
    notes = [n for n in result.notes if "recovered" in n.what]
    assert len(notes) == 1
    assert notes[0].segment == path.name and notes[0].line == cut_line
    assert "'cut_bytes': " in notes[0].what


@pytest.fixture
def other_device(tmp_path: Path) -> Path:
    directory = tmp_path / "other-journal"
    _fill(directory, tmp_path / "other-keys", 40, rotate_at=20)
    return directory


def test_entry_spliced_from_another_device_is_located(
    journal_dir: Path, other_device: Path
) -> None:
    path = seg(journal_dir, 2)
    content = lines(path)
    foreign = lines(seg(other_device, 2))
    content[3] = foreign[3]
    write_lines(path, content)
    assert_located(journal_dir, 2, 4)


def test_segment_replaced_by_another_devices_is_located(
    journal_dir: Path, other_device: Path
) -> None:
    shutil.copy(seg(other_device, 2), seg(journal_dir, 2))
    assert_located(journal_dir, 2, 1)


def test_segment_restored_from_an_older_copy_is_located(journal_dir: Path, tmp_path: Path) -> None:
    last = _last_segment(journal_dir)
    old = tmp_path / "old-copy"
    shutil.copy(seg(journal_dir, last), old)
    with open_journal(
        journal_dir, device_key_dir=tmp_path / "keys", segment_max_bytes=1 << 20
    ) as j:
        for i in range(3):
            j.append("completion", {"completion_id": f"late{i}"})  # grows the same segment
    _fill(journal_dir, tmp_path / "keys", 30)
    assert _last_segment(journal_dir) > last
    shutil.copy(old, seg(journal_dir, last))
    assert "does not match it" in assert_located(journal_dir, last + 1, 1)


def test_missing_middle_segment_is_located(journal_dir: Path) -> None:
    seg(journal_dir, 2).unlink()
    assert "segment 2 is missing" in assert_located(journal_dir, 3, 1)


def test_missing_first_segment_is_located(journal_dir: Path) -> None:
    seg(journal_dir, 1).unlink()
    assert_located(journal_dir, 2, 1)


def _resign(directory: Path, key: DeviceKey) -> None:
    """Rewrite every entry, header links included, under ``key``: a perfect forgery."""
    prev, link = "0" * 64, None
    for path in sorted(directory.glob("segment-*.jsonl")):
        out = []
        for raw in lines(path):
            entry = json.loads(raw)
            body = entry["body"]
            if entry["kind"] == "segment-header":
                body.update(public_key=key.public_b64, previous=link)
            if entry["kind"] == "key-created":
                body.update(public_key=key.public_b64, fingerprint=key.fingerprint)
            line, prev = seal(
                seq=entry["seq"],
                time=entry["time"],
                kind=entry["kind"],
                body=body,
                prev=prev,
                key=key,
            )
            out.append(line)
            last_seq = entry["seq"]
        write_lines(path, out)
        data = path.read_bytes()
        link = {
            "name": path.name,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "last_seq": last_seq,
            "last_hash": prev,
        }


def test_journal_resigned_with_another_key_fails_the_enrolled_fingerprint(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    _fill(directory, tmp_path / "keys", 40, forward_secure=False)  # one key: re-sign it all
    with open_journal(directory, device_key_dir=tmp_path / "keys", forward_secure=False) as journal:
        enrolled = journal.device_fingerprint
    assert verify_journal(directory, workers=1, expected_fingerprint=enrolled).ok
    _resign(directory, DeviceKey.generate())
    assert verify_journal(directory, workers=1).ok  # consistent on its own ...
    what = assert_located(directory, 1, 1, expected_fingerprint=enrolled)  # ... but not ours
    assert enrolled in what


def test_whole_journal_restored_from_older_copy_is_detected(
    journal_dir: Path, tmp_path: Path
) -> None:
    backup = tmp_path / "backup"
    shutil.copytree(journal_dir, backup)
    _fill(journal_dir, tmp_path / "keys", 10)
    with open_journal(journal_dir, device_key_dir=tmp_path / "keys") as journal:
        checkpoint = journal.checkpoint()
    shutil.rmtree(journal_dir)
    shutil.copytree(backup, journal_dir)
    assert verify_journal(journal_dir, workers=1).ok
    last = _last_segment(journal_dir)
    what = assert_located(
        journal_dir, last, len(lines(seg(journal_dir, last))), checkpoint=checkpoint
    )
    assert "older copy was restored" in what


def test_forged_checkpoint_is_rejected(journal_dir: Path, tmp_path: Path) -> None:
    with open_journal(journal_dir, device_key_dir=tmp_path / "keys") as journal:
        checkpoint = journal.checkpoint()
    checkpoint["seq"] -= 5
    result = verify_journal(journal_dir, workers=1, checkpoint=checkpoint)
    assert not result.ok and result.first_error is not None
    assert "signature" in result.first_error.what


def test_parallel_verify_names_the_same_first_error(
    journal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onbox.audit.verify as verify_module

    monkeypatch.setattr(verify_module, "PARALLEL_MIN_BYTES", 0)
    path = seg(journal_dir, 3)
    content = lines(path)
    del content[2]
    write_lines(path, content)
    serial = verify_journal(journal_dir, workers=1)
    seen: list[tuple[int, int]] = []
    parallel = verify_journal(journal_dir, workers=2, progress=lambda d, t: seen.append((d, t)))
    assert parallel.first_error == serial.first_error
    assert parallel.first_error is not None and parallel.first_error.line == 3
    assert seen and seen[-1][0] <= seen[-1][1]


@pytest.mark.parametrize(
    "change",
    [
        lambda raw: raw.replace(b'"seq":', b'"seq": ', 1),  # whitespace
        lambda raw: raw[:-2] + b',"note":"added"}\n',  # an extra field
        lambda raw: (
            b'{"body":{"outcome":"forged"},' + raw[1:]
        ),  # a duplicate key, first wins elsewhere
    ],
    ids=["whitespace", "extra-field", "duplicate-key"],
)
def test_semantically_neutral_edits_are_located(journal_dir: Path, change: Any) -> None:
    path = seg(journal_dir, 2)
    content = lines(path)
    content[3] = change(content[3])
    write_lines(path, content)
    assert "exact form" in assert_located(journal_dir, 2, 4)
