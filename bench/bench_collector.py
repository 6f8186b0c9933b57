"""Benchmark the collector: ingest with full checks, a fleet shipping at once, search, dashboard.

    python bench/bench_collector.py [--devices 50] [--entries 2000] [--rows 1000000]
                                    [--stores sqlite,postgresql] [--only ingest,...]
                                    [--skip fleet,...] [--workers N]

0. **signatures**: Ed25519 verifications per second (libsodium, as the collector checks
   them), and whole entry checks per second (parse, exact form, hash, signature), each
   in one thread, in N threads and in N processes: why the collector checks large
   uploads in worker processes (:mod:`onbox.collector.verifier`).
1. **ingest**: one device's 20,000 signed entries, uploaded in batches of 2,000, and 4
   devices' 5,000 uploaded at once (batches of 1,250; a thread and a connection each),
   verified entry by entry (hash, exact form, Ed25519 signature, chain, key history),
   straight into each store: entries per second with the checks in-process and spread
   over ``--workers`` processes (default: one per core), and the CPU each entry cost
   (collector, its workers and the PostgreSQL server together: µs of CPU per entry
   changes little with other load on the machine, entries/s does), with the load
   average at the time.
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
import multiprocessing
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
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
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
from onbox.collector.verifier import EntryVerifier, default_workers

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


def _cpu_seconds(pids: set[int]) -> float:
    """User + system CPU seconds the live processes ``pids`` have used so far (Linux)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
    found, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def _server_pids(url: str) -> set[int]:
    """The PostgreSQL server processes behind ``url`` (a throwaway cluster), else none."""
    host = next((p.split("=", 1)[1] for p in url.split() if p.startswith("host=")), None)
    if host is None:
        return set()
    try:
        postmaster = int((Path(host).parent / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return set()
    return _descendants(postmaster)


def bench_signatures(workers: int, root: Path, count: int = 4000) -> dict[str, Any]:
    """Per second, best of 3: Ed25519 verifications alone, and whole entry checks (parse,
    exact form, hash, signature: chain.check_run), in one thread, in ``workers`` threads
    and in ``workers`` processes. libsodium lets threads verify in parallel; the Python
    around each signature does not."""
    from onbox.audit.keys import DeviceKey, public_key_from_b64
    from onbox.collector.chain import check_run, key_timeline, link_runs

    key = DeviceKey.generate()
    messages = [b"onbox-journal-entry-v1:" + os.urandom(32) for _ in range(count)]
    pairs = [(key.public_b64, key.sign(m), m) for m in messages]
    directory, _, device = _journal(root / "checks", count)
    lines = [line for _, line in pending_lines(directory, -1)][1:]  # past the header
    spans = key_timeline(device, key_history_lines(directory))
    public_key_from_b64(key.public_b64)
    size = -(-len(lines) // workers)
    runs = [(lines[i : i + size], 1 + i) for i in range(0, len(lines), size)]

    def rate(work: Any) -> int:
        best = 0.0
        for _ in range(3):
            started = time.perf_counter()
            work()
            best = max(best, count / (time.perf_counter() - started))
        return round(best)

    out: dict[str, Any] = {"workers": workers}
    chunks = [pairs[i::workers] for i in range(workers)]
    verifier = EntryVerifier(workers, min_parallel=1)
    verifier.start()
    context = multiprocessing.get_context("spawn")
    with (
        ThreadPoolExecutor(workers) as threads,
        ProcessPoolExecutor(workers, mp_context=context) as processes,
    ):
        list(processes.map(_verify_all, [pairs[:1]] * workers))  # started and imported
        out["verify"] = {
            "one_thread": rate(lambda: _verify_all(pairs)),
            "threads": rate(lambda: all(threads.map(_verify_all, chunks))),
            "processes": rate(lambda: all(processes.map(_verify_all, chunks))),
        }
        out["check"] = {
            "one_thread": rate(lambda: link_runs([check_run(device, lines, 1, spans)])),
            "threads": rate(
                lambda: link_runs(
                    list(threads.map(lambda r: check_run(device, r[0], r[1], spans), runs))
                )
            ),
            "processes": rate(lambda: verifier.check(device, lines, 1, spans)),
        }
    verifier.close()
    return out


def _verify_all(pairs: list[tuple[str, str, bytes]]) -> bool:
    from onbox.audit.keys import public_key_from_b64, verify_signature

    public = public_key_from_b64(pairs[0][0])
    return all(verify_signature(public, sig, message) for _, sig, message in pairs)


Stream = tuple[str, list[bytes]]  # a device and its uploads, in order

#: the ingest scenarios: one device's series, and several devices uploading at once
#: (as a collector sees a fleet: one upload's checks overlap another's database work)
SCENARIOS = {"one device": (1, 20_000, 2000), "4 devices at once": (4, 5000, 1250)}


def ingest_uploads(root: Path) -> dict[str, list[Stream]]:
    """Each scenario's signed uploads (made once, for every store)."""
    out: dict[str, list[Stream]] = {}
    for name, (devices, entries, batch) in SCENARIOS.items():
        streams = []
        for i in range(devices):
            directory, keys, device = _journal(root / f"{devices}-{i}", entries)
            streams.append((device, _uploads(directory, keys, batch)))
        out[name] = streams
    return out


def bench_ingest(
    url: str, scenarios: dict[str, list[Stream]], workers: int, rounds: int
) -> dict[str, Any]:
    """Each scenario ingested with in-process checks and with ``workers`` processes, in
    alternating rounds (the median of each is reported: the machine may be shared)."""
    out: dict[str, Any] = {}
    for name, streams in scenarios.items():
        runs: dict[str, list[dict[str, Any]]] = {"in_process": [], "workers": []}
        for _ in range(rounds):
            for mode, count in (("in_process", 1), ("workers", workers)):
                runs[mode].append(_ingest_once(url, streams, count))
        out[name] = {}
        for mode, done in runs.items():
            done.sort(key=lambda r: r["per_second"])
            out[name][mode] = dict(done[len(done) // 2], rounds=[r["per_second"] for r in done])
    return out


def _ingest_once(url: str, streams: list[Stream], workers: int) -> dict[str, Any]:
    """Ingest every stream (a thread and a database connection each), checks shared."""
    _reset(url)
    stores = [Store(url) for _ in streams]
    verifier = EntryVerifier(workers)
    pool = verifier.start()  # a running collector's pool is warm
    parts = {
        "collector": {os.getpid()},
        "workers": {p.pid for p in pool._processes.values()} if pool is not None else set(),
        "server": _server_pids(url),
    }

    def run(index: int) -> int:
        device, uploads = streams[index]
        allowed = Enrolment([device])
        return sum(ingest(stores[index], raw, allowed, verifier).stored for raw in uploads)

    load = os.getloadavg()[0]
    before = {name: _cpu_seconds(pids) for name, pids in parts.items()}
    started = time.perf_counter()
    with ThreadPoolExecutor(len(streams)) as threads:
        stored = sum(threads.map(run, range(len(streams))))
    elapsed = time.perf_counter() - started
    used = {name: _cpu_seconds(pids) - before[name] for name, pids in parts.items()}
    verifier.close()
    for store in stores:
        store.close()
    return {
        "workers": workers,
        "entries": stored,
        "seconds": round(elapsed, 3),
        "per_second": round(stored / elapsed),
        "cpu_us_per_entry": round(sum(used.values()) / stored * 1e6, 1),
        "cpu_us_split": {name: round(sec / stored * 1e6, 1) for name, sec in used.items()},
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


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
    parts = "signatures,ingest,fleet,search,overhead"
    parser.add_argument("--skip", default="", help=f"comma list of {parts}")
    parser.add_argument("--only", default="", help=f"comma list of {parts}: run just these")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--rounds", type=int, default=3, help="ingest rounds per mode")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if args.only:
        skip |= set(parts.split(",")) - set(args.only.split(","))
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_at_start": round(os.getloadavg()[0], 2),
        }
    }
    with (
        tempfile.TemporaryDirectory(prefix="onbox-bench-") as tmp,
        _stores(args.stores.split(","), Path(tmp)) as urls,
    ):
        if "signatures" not in skip:
            results["signatures"] = bench_signatures(args.workers, Path(tmp))
        made = ingest_uploads(Path(tmp) / "ingest") if "ingest" not in skip else None
        for name, url in urls.items():
            part: dict[str, Any] = {}
            if made is not None:
                part["ingest"] = bench_ingest(url, made, args.workers, args.rounds)
            if "fleet" not in skip:
                part["fleet"] = bench_fleet(
                    url, Path(tmp) / f"{name}-fleet", args.devices, args.entries
                )
            if "search" not in skip:
                part["search"] = bench_search(url, args.rows)
            if "overhead" not in skip and name == "sqlite":
                part["overhead"] = bench_overhead(url, Path(tmp) / f"{name}-overhead")
            results[name] = part
    rows: list[tuple[str, str, Any, str]] = []
    per_core = default_workers()
    if "signatures" in results:
        sig = results["signatures"]
        n = sig["workers"]
        for what, label in (("verify", "Ed25519 verifies/s"), ("check", "entry checks/s")):
            rows.append(("-", f"{label}, 1 thread", sig[what]["one_thread"], ""))
            rows.append(("-", f"... {n} threads", sig[what]["threads"], ""))
            rows.append(("-", f"... {n} processes", sig[what]["processes"], ""))
    for name, part in results.items():
        if name in ("machine", "signatures"):
            continue
        for scenario, runs in part.get("ingest", {}).items():
            target = ">= 20,000" if name == "postgresql" else ""
            for mode in ("in_process", "workers"):
                run = runs[mode]
                how = "in-process" if mode == "in_process" else f"{run['workers']} workers"
                rows.append(
                    (name, f"ingest, {scenario}, {how} (entries/s)", run["per_second"], target)
                )
                split = run["cpu_us_split"]
                rows.append(
                    (
                        name,
                        f"... CPU us/entry: {split['collector']} collector + {split['workers']}"
                        f" workers + {split['server']} server; load {run['load_before']}",
                        run["cpu_us_per_entry"],
                        f"<= {per_core * 50:,} ({per_core} cores at 20,000/s)" if target else "",
                    )
                )
            ratio = runs["workers"]["per_second"] / runs["in_process"]["per_second"]
            rows.append((name, "... speed-up, workers / in-process", round(ratio, 2), ""))
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
    machine = results["machine"]
    print(f"{machine['cpus']} CPUs, load average {machine['load_at_start']} at the start")
    print(f"{'store':<11} {'measure':<{width}} {'value':>12}  target")
    for store_name, measure, value, target in rows:
        print(f"{store_name:<11} {measure:<{width}} {value!s:>12}  {target}")
    out = Path(__file__).parent / "results" / "collector.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
