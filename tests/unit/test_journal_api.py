"""The journal's public API: keys, rotation, durability errors, encoding, envelopes, stats."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onbox.audit import (
    CanonicalEncodingError,
    EnvelopeError,
    JournalCorrupt,
    JournalError,
    JournalKeyError,
    JournalUnwritable,
    decrypt_prompt,
    generate_recipient_key,
    iter_entries,
    journal_stats,
    open_journal,
    verify_journal,
)
from onbox.audit.canonical import (
    canonical_json,
    canonical_json_fast,
    fast_loads,
    format_number,
    plain_float,
)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ONBOX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ONBOX_JOURNAL_DIR", str(tmp_path / "journal"))
    return tmp_path


def test_first_use_creates_a_0600_key_and_journals_it(env: Path) -> None:
    with open_journal() as journal:
        assert journal.path == env / "journal"
        fingerprint = journal.device_fingerprint
    keys = list((env / "data" / "keys").glob("*.key"))
    assert [k.stem for k in keys] == [fingerprint]
    assert stat.S_IMODE(keys[0].stat().st_mode) == 0o600
    with open_journal() as journal:  # second open: same key, no new key-created
        assert journal.device_fingerprint == fingerprint
    kinds = [e["kind"] for e in iter_entries(env / "journal")]
    assert kinds == ["segment-header", "key-created"]
    created = list(iter_entries(env / "journal"))[1]
    assert created["body"]["fingerprint"] == fingerprint == created["key"]


def test_receipt_names_the_entry_on_disk(env: Path) -> None:
    with open_journal() as journal:
        first = journal.append("completion", {"completion_id": "x"})
        second = journal.append("egress", {"completion_id": "x"}, durable=True)
    on_disk = {e["seq"]: e for e in iter_entries(env / "journal")}
    assert second.seq == first.seq + 1
    assert on_disk[first.seq]["hash"] == first.entry_hash
    assert on_disk[second.seq]["prev"] == first.entry_hash
    assert on_disk[second.seq]["kind"] == "egress"


def test_rotation_is_signed_by_old_and_new_key_and_deletes_the_old_one(env: Path) -> None:
    with open_journal() as journal:
        device, old = journal.device_fingerprint, journal.key_fingerprint
        journal.rotate_key("scheduled")
        journal.append("completion", {"n": 1})
        new = journal.key_fingerprint
    assert new != old
    rotated = next(e for e in iter_entries(env / "journal") if e["kind"] == "key-rotated")
    assert rotated["key"] == new and rotated["body"]["old_key"] == old and "cosig" in rotated
    assert not (env / "data" / "keys" / f"{old}.key").exists()
    result = verify_journal(env / "journal", expected_fingerprint=device, workers=1)
    assert result.ok and result.keys == [old, new]
    # without the old key's co-signature the rotation is rejected, at that line
    path = env / "journal" / "segment-00000001.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if '"key-rotated"' in line)
    entry = json.loads(lines[index])
    lines[index] = lines[index].replace(entry["cosig"], entry["sig"])  # new key signs twice
    path.write_text("".join(lines))
    result = verify_journal(env / "journal", workers=1)
    assert result.first_error is not None and result.first_error.line == index + 1
    assert "co-signature" in result.first_error.what


def test_forward_secure_journal_evolves_keys_and_keeps_only_the_current(env: Path) -> None:
    with open_journal(segment_max_bytes=2000, forward_secure=True) as journal:
        device = journal.device_fingerprint
        for i in range(40):
            journal.append("completion", {"n": i})
        current = journal.key_fingerprint
    result = verify_journal(env / "journal", expected_fingerprint=device, workers=1)
    assert result.ok, result.first_error
    assert len(result.keys) == result.segments  # one key per segment
    assert [k.stem for k in (env / "data" / "keys").glob("*.key")] == [current]


def test_segments_rotate_by_day(env: Path) -> None:
    now = [datetime(2026, 11, 27, 23, 59, tzinfo=UTC)]
    with open_journal(clock=lambda: now[0]) as journal:
        journal.append("completion", {"n": 1})
        now[0] += timedelta(minutes=2)
        journal.append("completion", {"n": 2})
    headers = [e for e in iter_entries(env / "journal") if e["kind"] == "segment-header"]
    assert [h["body"]["day"] for h in headers] == ["2026-11-27", "2026-11-28"]
    assert headers[1]["body"]["previous"]["name"] == "segment-00000001.jsonl"
    assert verify_journal(env / "journal", workers=1).ok


def test_unwritable_journal_directory_raises_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(JournalUnwritable, match="on this machine"):
        open_journal(blocker / "journal", device_key_dir=tmp_path / "keys")


DISK_FULL = r"""
import json, resource, signal, sys
from pathlib import Path
from onbox.audit import JournalError, open_journal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
journal = open_journal(Path(sys.argv[1]), device_key_dir=Path(sys.argv[2]))
size = Path(sys.argv[1], "segment-00000001.jsonl").stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 2000, size + 2000))
written = 0
try:
    for i in range(1000):
        journal.append("egress", {"n": i, "pad": "x" * 100}, durable=True)
        written += 1
    print(json.dumps({"written": written, "error": None}))
except JournalError as exc:
    print(json.dumps({"written": written, "error": str(exc), "type": type(exc).__name__}))
"""


def test_disk_full_raises_journal_unwritable_and_leaves_no_partial_entry(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", DISK_FULL, str(tmp_path / "journal"), str(tmp_path / "keys")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    outcome = json.loads(proc.stdout)
    assert outcome["type"] == "JournalUnwritable"
    assert "disk is full" in outcome["error"] and "stay on this machine" in outcome["error"]
    assert 0 < outcome["written"] < 1000
    result = verify_journal(tmp_path / "journal", workers=1)
    assert result.ok, result.first_error
    assert result.kinds["egress"] == outcome["written"]


def test_value_json_cannot_carry_is_refused_and_the_journal_stays_whole(env: Path) -> None:
    with open_journal() as journal:
        with pytest.raises(CanonicalEncodingError):
            journal.append("completion", {"latency": math.nan})
        with pytest.raises(JournalError):
            journal.append("completion", {"big": 2**60 + 1})
        journal.append("completion", {"latency": 0.25})
    assert verify_journal(env / "journal", workers=1).ok


def test_canonical_json_follows_rfc8785() -> None:
    # RFC 8785 §3.2.3 sorting example: keys ordered by UTF-16 code units
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = [k for k in json.loads(canonical_json(value))]
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    # RFC 8785 §3.2.2.3 number examples, and whitespace/escaping
    numbers = [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001, -0.0]
    assert canonical_json(numbers) == b"[333333333.3333333,1e+30,4.5,0.002,1e-27,0]"
    assert canonical_json({"b": [True, None], "a": "x\u0001\n\u2028"}) == (
        b'{"a":"x\\u0001\\n\xe2\x80\xa8","b":[true,null]}'
    )


def test_encrypted_prompt_opens_only_with_the_security_team_key(env: Path) -> None:
    private, public = generate_recipient_key()
    prompt = "def handler(token='sk-live-123'):\n    return token"
    with open_journal() as journal:
        envelope = journal.store_encrypted_prompt(prompt, public)
        journal.append("egress", {"prompt_envelope": envelope}, durable=True)
    raw = b"".join(p.read_bytes() for p in (env / "journal").glob("segment-*.jsonl"))
    assert b"sk-live-123" not in raw
    stored = next(e for e in iter_entries(env / "journal") if e["kind"] == "egress")
    assert decrypt_prompt(stored["body"]["prompt_envelope"], private) == prompt
    other_private, _ = generate_recipient_key()
    with pytest.raises(EnvelopeError, match="not this key"):
        decrypt_prompt(envelope, other_private)
    tampered = dict(
        envelope, ct=envelope["ct"][:-4] + ("AAAA" if envelope["ct"][-4:] != "AAAA" else "BBBB")
    )
    with pytest.raises(EnvelopeError):
        decrypt_prompt(tampered, private)


def test_stats_count_egress_on_box_and_acceptance(env: Path) -> None:
    cloud = {"name": "cloud", "kind": "openai", "endpoint": "https://api.example", "model": "m"}
    onbox = {"name": "on-box", "kind": "llama-cpp", "model": "gemma"}
    with open_journal() as journal:
        for i in range(4):
            journal.append(
                "egress",
                {
                    "completion_id": f"e{i}",
                    "destination": cloud,
                    "label": "public",
                    "bytes_sent": 100,
                },
                durable=True,
            )
            journal.append(
                "completion", {"completion_id": f"e{i}", "destination": cloud, "outcome": "served"}
            )
        for i in range(6):
            journal.append(
                "completion",
                {
                    "completion_id": f"o{i}",
                    "destination": onbox,
                    "label": "restricted",
                    "outcome": "served",
                },
            )
        journal.append(
            "completion", {"completion_id": "c", "destination": onbox, "outcome": "cancelled"}
        )
        for cid in ("e0", "o1", "o2", "unknown"):
            journal.append("acceptance", {"completion_id": cid, "how": "whole"})
    stats = journal_stats(env / "journal")
    assert stats["egress"]["total"] == 4 and stats["egress"]["bytes_sent"] == 400
    assert stats["egress"]["by_destination"] == {"cloud": 4}
    assert stats["egress"]["by_label"] == {"public": 4}
    assert list(stats["egress"]["by_day"].values()) == [4]
    assert stats["completions"]["served_on_box"] == 6
    assert stats["completions"]["by_outcome"] == {"cancelled": 1, "served": 10}
    assert stats["acceptance"]["accepted"] == 3 and stats["acceptance"]["rate"] == pytest.approx(
        0.3
    )
    future = datetime.now(UTC) + timedelta(days=1)
    assert journal_stats(env / "journal", since=future)["entries"] == 0


def test_two_journal_handles_in_one_process_share_the_chain(env: Path) -> None:
    with open_journal() as first, open_journal() as second:

        def write(journal: object, name: str) -> None:
            for i in range(300):
                journal.append("completion", {"w": name, "n": i})  # type: ignore[attr-defined]

        threads = [
            threading.Thread(target=write, args=(j, n)) for j, n in ((first, "a"), (second, "b"))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    result = verify_journal(env / "journal", workers=1)
    assert result.ok, result.first_error
    assert result.kinds["completion"] == 600


def test_append_after_close_raises(env: Path) -> None:
    journal = open_journal()
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        journal.append("completion", {})
    assert not os.path.exists(env / "journal" / "segment-00000002.jsonl")


def test_a_rotation_by_another_handle_is_followed(env: Path) -> None:
    with open_journal() as server, open_journal() as cli:
        server.append("completion", {"n": 1})
        cli.rotate_key("manual")
        server.append("completion", {"n": 2})  # signs with the new key, not the deleted one
        assert server.key_fingerprint == cli.key_fingerprint
    result = verify_journal(env / "journal", workers=1)
    assert result.ok, result.first_error
    assert len(result.keys) == 2


def test_a_tampered_tail_refuses_to_open(env: Path) -> None:
    with open_journal() as journal:
        journal.append("completion", {"outcome": "served"})
    path = env / "journal" / "segment-00000001.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"served"', b'"cancel"'))
    with pytest.raises(JournalCorrupt, match="onbox journal verify"):
        open_journal()


def test_a_lost_device_key_refuses_to_extend_the_journal(env: Path) -> None:
    with open_journal() as journal:
        journal.append("completion", {"n": 1})
    for path in (env / "data" / "keys").iterdir():
        path.unlink()
    with pytest.raises(JournalKeyError, match="Move the journal directory aside"):
        open_journal()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_verifier_fast_path_reencodes_exactly_the_canonical_bytes(value: object) -> None:
    encoded = canonical_json(value)
    parsed, plain = fast_loads(encoded)
    assert canonical_json_fast(parsed, plain) == encoded
    assert canonical_json(json.loads(encoded)) == encoded  # canonical form is a fixed point


@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_round_trip_and_match_repr_where_plain(value: float) -> None:
    text = format_number(value)
    assert float(text) == value
    if plain_float(value):
        assert text == repr(value)


def test_stats_read_the_bodies_the_server_writes(env: Path) -> None:
    # shapes as inference/routing.py (egress), server/pipeline.py (completion) and
    # server/lsp.py (acceptance) write them
    onbox = {"name": "on-box", "kind": "llama-cpp", "endpoint": "in-process", "model": "g"}
    corp = {"name": "corp", "kind": "openai", "endpoint": "https://llm.corp", "model": "m"}
    with open_journal() as journal:
        journal.append(
            "egress",
            {"destination": "corp", "kind": "openai", "label": "internal", "bytes": 512},
            durable=True,
        )
        journal.append(
            "completion", {"id": "a", "destination": corp, "label": "internal", "outcome": "served"}
        )
        journal.append(
            "completion",
            {"id": "b", "destination": onbox, "label": "restricted", "outcome": "served"},
        )
        journal.append(
            "completion",
            {"id": "c", "destination": onbox, "label": "restricted", "outcome": "empty"},
        )
        journal.append("acceptance", {"completionId": "b", "how": "line", "destination": "on-box"})
    stats = journal_stats(env / "journal")
    assert stats["egress"]["by_destination"] == {"corp": 1}
    assert stats["egress"]["bytes_sent"] == 512
    assert stats["completions"]["served_on_box"] == 1
    assert stats["acceptance"] == {"served": 2, "accepted": 1, "rate": 0.5}
