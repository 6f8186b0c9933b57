"""Two processes (two editor windows) appending to one journal: nothing interleaved or lost."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from onbox.audit import iter_entries, verify_journal

WRITER = r"""
import sys, time
from pathlib import Path
from onbox.audit import open_journal

journal_dir, key_dir, name, count = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
Path(sys.argv[5]).touch()  # ready
while not Path(sys.argv[6]).exists():
    time.sleep(0.005)
with open_journal(journal_dir, device_key_dir=key_dir, segment_max_bytes=256 * 1024) as journal:
    for i in range(count):
        journal.append("completion", {"writer": name, "n": i}, durable=(i % 1000 == 999))
"""

COUNT = 10_000


def test_two_processes_append_10000_entries_each(tmp_path: Path) -> None:
    journal_dir, key_dir = tmp_path / "journal", tmp_path / "keys"
    go = tmp_path / "go"
    # create the device key first so both writers share it (as two editor windows would)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from onbox.audit import open_journal; open_journal(Path(sys.argv[1]), device_key_dir=Path(sys.argv[2])).close()",
            str(journal_dir),
            str(key_dir),
        ],
        check=True,
    )
    procs = []
    for name in ("a", "b"):
        ready = tmp_path / f"ready-{name}"
        procs.append(
            (
                ready,
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        WRITER,
                        str(journal_dir),
                        str(key_dir),
                        name,
                        str(COUNT),
                        str(ready),
                        str(go),
                    ],
                    env={**os.environ, "ONBOX_DATA_DIR": str(tmp_path / "data")},
                ),
            )
        )
    while not all(ready.exists() for ready, _ in procs):
        if any(p.poll() is not None for _, p in procs):
            break
        time.sleep(0.005)
    go.touch()
    for _, proc in procs:
        assert proc.wait(timeout=240) == 0

    result = verify_journal(journal_dir, workers=1)
    assert result.ok, result.first_error
    seen: dict[str, list[int]] = defaultdict(list)
    order = []
    for entry in iter_entries(journal_dir):
        if entry["kind"] == "completion":
            seen[entry["body"]["writer"]].append(entry["body"]["n"])
            order.append(entry["body"]["writer"])
    # each writer's entries are all there, once, in the order it wrote them
    assert seen["a"] == list(range(COUNT))
    assert seen["b"] == list(range(COUNT))
    switches = sum(1 for x, y in itertools.pairwise(order) if x != y)
    assert switches > 1  # the writers really ran at the same time
    assert result.segments > 1  # and rotated segments while contending
