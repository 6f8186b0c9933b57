"""Benchmark the collector: ingest with full checks, a fleet shipping at once, search, dashboard.

    python bench/bench_collector.py [--devices 50] [--entries 2000] [--rows 1000000]
                                    [--stores sqlite,postgresql]

1. **ingest**: one device's 20,000 signed entries, uploaded in batches of 2,000 and
   verified entry by entry (hash, exact form, Ed25519 signature, chain, key history),
   straight into each store: entries per second.
2. **fleet**: ``--devices`` real journals of ``--entries`` each, shipped concurrently
   (16 shippers) over HTTP to a real ``onbox collector serve --workers <CPUs>``, every
   tenth device's shipment sent twice: entries verified and stored, lost, stored twice.
3. **search**: ``--rows`` entries bulk-loaded (unsigned rows: search does not look at
   signatures), then one device's egress for one day, p50/p95 of 200 queries.
4. **dashboard**: the first paint (the whole page rendered by the collector) at that size.
5. **shipping overhead**: the durable egress append on the completion path (the write-ahead
   journal step of every cloud completion), p50/p95 idle and while a shipper ships the
   same journal without pause to a real collector, in the same run. An upper bound for
   the completion's own overhead, whose latency is mostly generation.

PostgreSQL runs on a throwaway cluster (``tests/support/postgres.py``) when installed.
Prints a table and writes ``bench/results/collector.json``; targets are printed beside
the numbers (issue 14); nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from onbox.audit import open_journal
from onbox.audit.bundle import key_history_lines
from onbox.audit.ship import pending_lines, ship
from onbox.audit.upload import build_upload
from onbox.collector import Enrolment, EntryQuery, Store, find_entries, ingest
from onbox.collector.dashboard import render
from onbox.collector.query import enrol

SERVE = [sys.executable, "-m", "onbox", "collector", "serve"]
DAY0 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=20)


def _journal(root: Path, entries: int) -> tuple[Path, Path, str]:
    directory, keys = root / "journal", root / "keys"
    clock = [DAY0]
    with open_journal(directory, device_key_dir=keys, clock=lambda: clock[0]) as journal:
        for i in range(entries):
            journal.append(
                "egress",
                {
                    "destination": "cloud",
                    "kind": "openai",
                    "label": ("public", "internal")[i % 2],
                    "repo": "acme/web",
                    "path": f"src/m{i % 50}.py",
                    "bytes": 1000 + i % 700,
                    "promptSha256": f"{i:064x}",
                    "actor": {"osUser": "dev", "host": root.name, "gitEmail": "dev@acme.test"},
                },
            )
            clock[0] += timedelta(seconds=30)
        return directory, keys, str(journal.device_fingerprint)


def _uploads(directory: Path, keys: Path, batch: int) -> list[bytes]:
    lines = list(pending_lines(directory, -1))
    history = key_history_lines(directory)
    out = []
    with open_journal(directory, device_key_dir=keys) as journal:
        for start in range(0, len(lines), batch):
            chunk = lines[start : start + batch]
            built = build_upload(journal, [line for _, line in chunk], chunk[0][0], history)
            out.append(json.dumps(built).encode())
    return out


@contextlib.contextmanager
def _stores(names: list[str], root: Path) -> Iterator[dict[str, str]]:
    urls: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if "sqlite" in names:
            urls["sqlite"] = f"sqlite:///{root / 'bench.db'}"
        if "postgresql" in names:
            from tests.support.postgres import pg_bin, postgres_cluster

            if pg_bin() is not None:
                cluster = postgres_cluster()
                urls["postgresql"] = next(cluster)
                stack.callback(lambda: next(cluster, None))
        yield urls


def _reset(url: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).unlink(missing_ok=True)
    else:
        from tests.support.postgres import reset

        reset(url)


def bench_ingest(url: str, root: Path) -> dict[str, Any]:
    _reset(url)
    directory, keys, device = _journal(root / "one", 20_000)
    uploads = _uploads(directory, keys, 2000)
    store = Store(url)
    started = time.perf_counter()
    stored = sum(ingest(store, raw, Enrolment([device])).stored for raw in uploads)
    elapsed = time.perf_counter() - started
    store.close()
    return {"entries": stored, "seconds": round(elapsed, 3), "per_second": round(stored / elapsed)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_fleet(url: str, root: Path, devices: int, entries: int) -> dict[str, Any]:
    _reset(url)
    store = Store(url)
    made = []
    started = time.perf_counter()
    for i in range(devices):
        made.append(_journal(root / f"dev{i}", entries))
        enrol(store, made[-1][2])
    generated = time.perf_counter() - started
    port = _free_port()
    server = subprocess.Popen(
        [*SERVE, "--db", url, "--port", str(port), "--workers", str(os.cpu_count() or 1)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)

        def one(index: int) -> int:
            directory, keys, _ = made[index]
            state = root / f"dev{index}" / "ship-state.json"
            sent = 0
            with open_journal(directory, device_key_dir=keys) as journal:
                sent += ship(journal, base, state, batch_entries=500).stored
                if index % 10 == 0:  # a replayed shipment: nothing may be stored twice
                    state.unlink()
                    sent += ship(journal, base, state, batch_entries=500).stored
            return sent

        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            stored = sum(pool.map(one, range(devices)))
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(30)
    expected = sum(max(seq for seq, _ in pending_lines(d, -1)) + 1 for d, _, _ in made)
    with store.read() as tx:
        rows = tx.fetchone("SELECT COUNT(*), COUNT(DISTINCT device) FROM entries")
        dup = tx.fetchone(
            "SELECT COUNT(*) FROM (SELECT device, seq FROM entries GROUP BY device, seq"
            " HAVING COUNT(*) > 1) AS d"
        )
    store.close()
    assert rows is not None and dup is not None
    return {
        "devices": devices,
        "entries_per_device": entries,
        "generate_seconds": round(generated, 1),
        "ship_seconds": round(elapsed, 2),
        "per_second": round(int(rows[0]) / elapsed),
        "expected": expected,
        "stored": int(rows[0]),
        "stored_reported": stored,
        "lost": expected - int(rows[0]),
        "duplicated": int(dup[0]),
    }


def _bulk_rows(url: str, rows: int) -> list[str]:
    _reset(url)
    store = Store(url)
    devices = [f"{i:032x}" for i in range(500)]
    per_device = rows // len(devices)
    step = timedelta(days=30) / max(per_device, 1)
    labels, kinds = ("public", "internal", "restricted"), ("egress", "completion", "egress")
    batch: list[tuple[Any, ...]] = []

    def flush() -> None:
        with store.transaction() as tx:
            tx.executemany(
                "INSERT INTO entries (device, seq, hash, prev, time, kind, key, repo, path,"
                " label, destination, destination_kind, bytes, tokens_in, tokens_out, os_user,"
                " git_email, line, received) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                batch,
            )
        batch.clear()

    for d, device in enumerate(devices):
        moment = DAY0
        for seq in range(per_device):
            kind = kinds[seq % 3]
            batch.append(
                (
                    device, seq, f"{seq:064x}", f"{seq - 1:064x}",
                    moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), kind, device, "acme/web",
                    f"src/m{seq % 97}.py", labels[seq % 3], ("cloud", "corp")[d % 2],
                    "openai", 900, 40 if kind == "completion" else None,
                    8 if kind == "completion" else None, "dev", "dev@acme.test", "{}", "",
                )
            )  # fmt: skip
            moment += step
            if len(batch) >= 20_000:
                flush()
    flush()
    with store.transaction() as tx:
        tx.execute(
            "INSERT INTO devices (device, status, last_seen, head_seq, entries)"
            " SELECT device, 'enrolled', MAX(time), MAX(seq), COUNT(*) FROM entries GROUP BY device"
        )
    store.close()
    return devices


def bench_search(url: str, rows: int) -> dict[str, Any]:
    started = time.perf_counter()
    devices = _bulk_rows(url, rows)
    loaded = time.perf_counter() - started
    if url.startswith("postgresql") or not url.startswith("sqlite"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")
    store = Store(url)
    timings = []
    rng = random.Random(7)
    for _ in range(200):
        day = DAY0 + timedelta(days=rng.randrange(30))
        query = EntryQuery(
            device=rng.choice(devices), kind="egress", since=day, until=day + timedelta(days=1),
            limit=10_000,
        )  # fmt: skip
        t0 = time.perf_counter()
        found = find_entries(store, query)
        timings.append(time.perf_counter() - t0)
    timings.sort()
    paints = []
    for _ in range(5):
        t0 = time.perf_counter()
        page = render(store, silence=timedelta(minutes=30))
        paints.append(time.perf_counter() - t0)
    store.close()
    return {
        "rows": rows,
        "load_seconds": round(loaded, 1),
        "last_hits": len(found),
        "query_p50_ms": round(statistics.median(timings) * 1000, 2),
        "query_p95_ms": round(timings[int(len(timings) * 0.95)] * 1000, 2),
        "dashboard_ms": round(statistics.median(paints) * 1000, 1),
        "dashboard_bytes": len(page),
    }


def bench_overhead(url: str, root: Path) -> dict[str, Any]:
    from onbox.audit.ship import Shipper

    _reset(url)
    directory, keys, device = _journal(root / "ws", 20_000)
    store = Store(url)
    enrol(store, device)
    store.close()
    port = _free_port()
    server = subprocess.Popen(
        [*SERVE, "--db", url, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        with open_journal(directory, device_key_dir=keys) as journal:

            def appends(count: int) -> list[float]:
                times = []
                for i in range(count):
                    t0 = time.perf_counter()
                    journal.append("egress", {"destination": "cloud", "n": i}, durable=True)
                    times.append(time.perf_counter() - t0)
                    time.sleep(0.002)  # completions arrive spaced out, not back to back
                return sorted(times)

            idle = appends(1000)
            shipper = Shipper(journal, lambda: (base, 0.0001, None), root / "state.json")
            shipper.start()
            busy = appends(1000)
            shipper.stop(30)
    finally:
        server.terminate()
        server.wait(30)

    def ms(values: list[float], q: float) -> float:
        return round(values[int(len(values) * q)] * 1000, 3)

    return {
        "idle_p50_ms": ms(idle, 0.5),
        "idle_p95_ms": ms(idle, 0.95),
        "shipping_p50_ms": ms(busy, 0.5),
        "shipping_p95_ms": ms(busy, 0.95),
        "p50_ratio": round(ms(busy, 0.5) / ms(idle, 0.5), 3),
        "shipments": shipper.shipments,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--skip", default="", help="comma list of ingest,fleet,search,overhead")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}
    }
    with (
        tempfile.TemporaryDirectory(prefix="onbox-bench-") as tmp,
        _stores(args.stores.split(","), Path(tmp)) as urls,
    ):
        for name, url in urls.items():
            part: dict[str, Any] = {}
            if "ingest" not in skip:
                part["ingest"] = bench_ingest(url, Path(tmp) / f"{name}-ingest")
            if "fleet" not in skip:
                part["fleet"] = bench_fleet(
                    url, Path(tmp) / f"{name}-fleet", args.devices, args.entries
                )
            if "search" not in skip:
                part["search"] = bench_search(url, args.rows)
            if "overhead" not in skip and name == "sqlite":
                part["overhead"] = bench_overhead(url, Path(tmp) / f"{name}-overhead")
            results[name] = part
    rows = []
    for name, part in results.items():
        if name == "machine":
            continue
        if "ingest" in part:
            rows.append(
                (
                    name,
                    "ingest, full checks (entries/s)",
                    part["ingest"]["per_second"],
                    ">= 20,000 (PostgreSQL)",
                )
            )
        if "fleet" in part:
            f = part["fleet"]
            rows.append(
                (
                    name,
                    f"fleet {f['devices']} x {f['entries_per_device']} over HTTP (entries/s)",
                    f["per_second"],
                    "",
                )
            )
            rows.append(
                (name, "fleet: lost / stored twice", f"{f['lost']} / {f['duplicated']}", "0 / 0")
            )
        if "search" in part:
            s = part["search"]
            rows.append(
                (
                    name,
                    f"one device-day of egress, {s['rows']:,} rows: p95 ms",
                    s["query_p95_ms"],
                    "<= 100",
                )
            )
            rows.append((name, "dashboard first paint (ms)", s["dashboard_ms"], "<= 1000"))
        if "overhead" in part:
            o = part["overhead"]
            rows.append((name, "durable egress append p50 ms, idle", o["idle_p50_ms"], ""))
            rows.append((name, "... while shipping nonstop", o["shipping_p50_ms"], ""))
            rows.append(
                (
                    name,
                    "... ratio (completion overhead bound)",
                    o["p50_ratio"],
                    "<= 1.01 of completion",
                )
            )
    width = max(len(r[1]) for r in rows) if rows else 10
    print(f"{'store':<11} {'measure':<{width}} {'value':>12}  target")
    for store_name, measure, value, target in rows:
        print(f"{store_name:<11} {measure:<{width}} {value!s:>12}  {target}")
    out = Path(__file__).parent / "results" / "collector.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
