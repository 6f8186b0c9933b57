"""Journal benchmark: append (group commit, fsync per entry) and verify throughput.

Usage::

    python bench/bench_journal.py            # quick: 20k appends, 2k fsynced, verify 60k
    python bench/bench_journal.py --full     # also build a 1,000,000-entry journal and verify
                                             # it in parallel (about 4 minutes on 2 cores)

Prints a table and writes ``bench/results/journal.json``. Rates are given per wall-clock
second and per CPU second of the measuring process (and its verify workers): on a shared
machine the CPU figure is the honest "per core" number. The 1M figure is extrapolated
from the measured parallel verify rate unless ``--full`` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from onbox.audit import open_journal, verify_journal

BODY: dict[str, Any] = {
    "completion_id": "0f6c2a1e9b7d4c35",
    "destination": {"name": "on-box", "kind": "llama-cpp", "model": "gemma-3-270m-q4_k_m"},
    "label": "restricted",
    "reasons": ["repo tag: payments", "CODEOWNERS @acme/security"],
    "policy": {"id": "acme-2026-11", "serial": 42},
    "prompt_sha256": "9" * 64,
    "document_sha256": "a" * 64,
    "bytes_in": 2311,
    "tokens_out": 17,
    "latency_s": 0.183,
    "outcome": "served",
}


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _measure(work: Callable[[], int]) -> dict[str, float]:
    wall, cpu = time.perf_counter(), _cpu()
    count = work()
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    return {
        "entries": count,
        "wall_s": wall,
        "cpu_s": cpu,
        "per_s": count / wall,
        "per_cpu_s": count / cpu if cpu else 0.0,
    }


def _append(directory: Path, count: int, durable: bool) -> int:
    with open_journal(directory, device_key_dir=directory.parent / "keys") as journal:
        for i in range(count):
            journal.append("completion", {**BODY, "n": i}, durable=durable)
    return count


def _build(root: Path, size: int, console: Console) -> Path:
    directory = root / "j"
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"building {size:,} entries", total=size)
        with open_journal(directory, device_key_dir=root / "keys") as journal:
            for i in range(size):
                journal.append("completion", {**BODY, "n": i})
                if i % 5000 == 0:
                    bar.update(task, completed=i)
    return directory


def _verify(directory: Path, workers: int, console: Console) -> int:
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"verify ({workers} proc)", total=1)
        result = verify_journal(
            directory,
            workers=workers,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if not result.ok:
        raise SystemExit(f"verify failed: {result.first_error}")
    return int(result.entries)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--appends", type=int, default=20_000)
    parser.add_argument("--fsynced", type=int, default=2_000)
    parser.add_argument("--verify-entries", type=int, default=60_000)
    parser.add_argument("--full", action="store_true", help="build and verify 1,000,000 entries")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "journal.json"
    )
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    cores = os.cpu_count() or 1
    results: dict[str, Any] = {"cores": cores, "loadavg_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="onbox-bench-") as tmp:
        root = Path(tmp)
        results["append_group_commit"] = _measure(
            lambda: _append(root / "g" / "j", args.appends, False)
        )
        results["append_fsync_each"] = _measure(
            lambda: _append(root / "f" / "j", args.fsynced, True)
        )
        big = _build(root / "v", args.verify_entries, console)
        results["journal_bytes"] = sum(p.stat().st_size for p in big.glob("segment-*"))
        results["verify_1_process"] = _measure(lambda: _verify(big, 1, console))
        results["verify_parallel"] = _measure(lambda: _verify(big, cores, console))
        par = results["verify_parallel"]
        results["verify_1m_seconds"] = 1_000_000 / par["per_s"]
        results["verify_1m_measured"] = False
        if args.full:
            million = _build(root / "m", 1_000_000, console)
            results["verify_1m"] = _measure(lambda: _verify(million, cores, console))
            results["verify_1m_seconds"] = results["verify_1m"]["wall_s"]
            results["verify_1m_measured"] = True
    results["ratios"] = {
        "group_commit_over_fsync": results["append_group_commit"]["per_s"]
        / results["append_fsync_each"]["per_s"],
        "parallel_speedup": par["per_s"] / results["verify_1_process"]["per_s"],
    }
    results["loadavg_after"] = os.getloadavg()
    _print(results, Console())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _print(results: dict[str, Any], console: Console) -> None:
    table = Table(
        title=f"journal benchmark ({results['cores']} cores, load {results['loadavg_before'][0]:.1f})"
    )
    for column in ("measure", "entries", "wall s", "entries/s", "entries/CPU-s", "target"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    targets = {
        "append_group_commit": ">= 10,000/s",
        "append_fsync_each": ">= 1,000/s",
        "verify_1_process": ">= 8,000/s per core",
        "verify_parallel": "1M in < 120 s",
    }
    if "verify_1m" in results:
        targets["verify_1m"] = "< 120 s"
    for name, target in targets.items():
        row = results[name]
        table.add_row(
            name,
            f"{row['entries']:,}",
            f"{row['wall_s']:.2f}",
            f"{row['per_s']:,.0f}",
            f"{row['per_cpu_s']:,.0f}",
            target,
        )
    console.print(table)
    how = "measured" if results["verify_1m_measured"] else "extrapolated from the parallel rate"
    console.print(f"1,000,000-entry verify: {results['verify_1m_seconds']:.0f} s ({how})")
    ratios = results["ratios"]
    console.print(
        f"group commit / fsync-each: {ratios['group_commit_over_fsync']:.1f}x; "
        f"parallel verify speedup: {ratios['parallel_speedup']:.2f}x"
    )


if __name__ == "__main__":
    sys.exit(main())
