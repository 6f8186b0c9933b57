"""Signed policy: verify and load a 5,000-rule policy; directory drop to ``on_change``.

Targets (issue 6): verify and load <= 100 ms; a bundle dropped into a watched
directory reaches ``PolicyService.on_change`` <= 1 s later. Prints a table and writes
``bench/results/bench_policy.json``. Run: ``python bench/bench_policy.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from onbox.classification.bundle import PolicyBundle, make_bundle
from onbox.classification.policy import Policy, parse_policy
from onbox.classification.policy_store import PolicyStore
from onbox.classification.sources import DirectorySource
from onbox.classification.trust import TrustRoot
from onbox.server.policy_service import PolicyService

RESULTS = Path(__file__).parent / "results" / "bench_policy.json"


def big_policy(pid: str, rules: int = 5000) -> bytes:
    """A valid policy with ``rules`` rules: repos, tags, owners and regex detectors."""
    n_repos, n_owners, n_tags = rules * 2 // 5, rules * 3 // 10, rules // 5
    n_detectors = rules - n_repos - n_owners - n_tags
    out = [
        f'[policy]\nid = "{pid}"\nlabels = ["public", "internal", "restricted"]\n'
        'default_label = "restricted"\n'
    ]
    for i in range(n_repos):
        out.append(f'[[repos]]\nmatch = "github.com/acme/svc-{i}"\ntags = ["t{i % n_tags}"]\n')
    out.append("[tags]\n")
    out.extend(f't{i} = "{("public", "internal", "restricted")[i % 3]}"\n' for i in range(n_tags))
    out.append("[owners]\n")
    out.extend(f'"@acme/team-{i}" = "internal"\n' for i in range(n_owners))
    for i in range(n_detectors):
        out.append(
            f'[[detectors]]\nname = "d{i}"\nkind = "regex"\n'
            f"pattern = 'ID{i}-[0-9]{{8}}'\nlabel = \"restricted\"\n"
        )
    out.append(
        '[destinations.on-box]\nkind = "llama-cpp"\nclearance = "restricted"\n'
        '[routes]\npublic = ["on-box"]\ninternal = ["on-box"]\nrestricted = ["on-box"]\n'
    )
    return "".join(out).encode()


def timed(fn: Callable[[], object], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of each of ``runs`` calls (CPU shows shared-host noise)."""
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return wall, cpu


def bench_load(tmp: Path, runs: int) -> dict[str, tuple[list[float], list[float]]]:
    keys = [Ed25519PrivateKey.generate() for _ in range(3)]
    root = TrustRoot.create([k.public_key() for k in keys], 2)
    (tmp / "root.json").write_bytes(root.to_bytes())
    policy = big_policy("bench-5000")
    expires = datetime.now(UTC) + timedelta(days=30)
    data = make_bundle(policy, 1, expires, keys[:2]).to_bytes()
    serial = iter(range(2, 10_000))

    def fresh_store() -> PolicyStore:
        return PolicyStore(tmp / "policy", trust_root_path=tmp / "root.json")

    def apply_new() -> None:
        bundle = make_bundle(policy, next(serial), expires, keys[:2]).to_bytes()
        assert fresh_store().apply(bundle, "bench").changed

    fresh_store().apply(data, "bench")
    return {
        "bundle parse + 2-of-3 signature check": timed(
            lambda: PolicyBundle.from_bytes(data).verify(root), runs
        ),
        "policy parse + validate (5,000 rules)": timed(lambda: parse_policy(policy, "bench"), runs),
        "cold load: current() in a new store": timed(lambda: fresh_store().current(), runs),
        "apply: verify, check, parse, fsync, swap": timed(apply_new, runs),
    }


def bench_drop(tmp: Path, runs: int) -> list[float]:
    """Milliseconds from a bundle's rename into the watched dir to ``on_change``."""
    keys = [Ed25519PrivateKey.generate()]
    (tmp / "root.json").write_bytes(TrustRoot.create([keys[0].public_key()], 1).to_bytes())
    drop = tmp / "drop"
    drop.mkdir()
    store = PolicyStore(tmp / "policy", trust_root_path=tmp / "root.json")
    changed = threading.Event()
    seen: list[float] = []

    def on_change(policy: Policy) -> None:
        seen.append(time.perf_counter())
        changed.set()

    service = PolicyService(store, [DirectorySource(drop)], 3600.0, on_change, lambda _m: None)
    service.start()
    expires = datetime.now(UTC) + timedelta(days=1)
    samples = []
    try:
        time.sleep(0.5)  # let the first (empty) pull finish
        for i in range(1, runs + 1):
            data = make_bundle(big_policy(f"drop-{i}", 50), i, expires, keys).to_bytes()
            (drop / ".incoming").write_bytes(data)
            changed.clear()
            start = time.perf_counter()
            os.replace(drop / ".incoming", drop / f"p{i}.onbox-policy")
            if not changed.wait(10):
                raise RuntimeError(f"bundle {i} was not applied within 10 s")
            samples.append((seen[-1] - start) * 1000)
    finally:
        service.stop()
    return samples


def _row(name: str, wall: list[float], cpu: list[float] | None, target: float) -> dict[str, Any]:
    median = statistics.median(wall)
    return {
        "measure": name,
        "median_ms": median,
        "max_ms": max(wall),
        "cpu_median_ms": statistics.median(cpu) if cpu else None,
        "target_ms": target,
        "median_over_target": median / target,
    }


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks, print a table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "load").mkdir()
        (Path(tmp) / "drop").mkdir()
        loads = bench_load(Path(tmp) / "load", args.runs)
        drops = bench_drop(Path(tmp) / "drop", args.runs)
    rows: list[dict[str, Any]] = []
    for name, (wall, cpu) in loads.items():
        rows.append(_row(name, wall, cpu, 100.0))
    rows.append(_row("directory drop -> on_change", drops, None, 1000.0))
    width = max(len(r["measure"]) for r in rows)
    print(
        f"{'measure'.ljust(width)}  {'median ms':>9}  {'max ms':>7}  {'cpu ms':>7}"
        f"  {'target':>6}  median/target"
    )
    for r in rows:
        cpu_text = "-" if r["cpu_median_ms"] is None else f"{r['cpu_median_ms']:.1f}"
        print(
            f"{r['measure'].ljust(width)}  {r['median_ms']:9.1f}  {r['max_ms']:7.1f}"
            f"  {cpu_text:>7}  {r['target_ms']:6.0f}  {r['median_over_target']:.2f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "runs": args.runs,
                "python": sys.version.split()[0],
                "cpus": os.cpu_count(),
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
