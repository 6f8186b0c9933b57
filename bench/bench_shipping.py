"""Journal shipping's cost to completion latency, with the model loaded (issue 14: ≤ 1%).

Two real ``onbox serve`` processes with the same policy, each with its own journal: one
policy also names a real collector (``onbox collector serve`` on loopback, SQLite, trust
on first use), so that server ships its journal **without pause** (``ship_minutes`` of a
few hundredths of a second: a signed upload or heartbeat all the time, far more than the
default of one every 5 minutes, at start and per sealed segment); the other ships
nothing. Completions alternate between the two (A, B, then B, A, …) so both see the same
machine; each run gives both the same new prompt, and each server has a model worker of
its own, so neither finds the prompt in a KV cache.

Two paths, each in both servers:

- ``on-box``: the default model through the model worker (a ``completion`` journal entry);
- ``cloud``: a public file routed to a loopback OpenAI-compatible server
  (``tests/support/recording_server.py``, 50 ms simulated model latency), the path with
  the durable, fsynced ``egress`` entry written before the bytes leave.

The collector runs under ``nice -n 19``: in a fleet it is another machine, here it
shares the workstation's cores. Prints p50/p95 per path and the ratios of the same run,
and the CPU time the shipping server spent beyond the other one (as a share of one core
over the measured runs): latency on a shared machine is noisy, CPU time much less so.
Writes ``bench/results/bench_shipping.json``; asserts nothing.

    python bench/bench_shipping.py [--runs 20] [--paths on-box,cloud]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_completion import Session, end_of  # noqa: E402

from tests.support.policies import PolicyBuilder  # noqa: E402
from tests.support.recording_server import RecordingServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SHIP_MINUTES = 0.0005  # 30 ms between shipments: shipping never pauses


def _policy(cloud_url: str, path: str, audit: str = "") -> str:
    """acme/site is public; on the ``cloud`` path public files go to the loopback cloud."""
    builder = (
        PolicyBuilder("bench-shipping", extra=audit)
        .repo("github.com/acme/site", "public")
        .destination(
            "cloud",
            kind="openai",
            base_url=f"{cloud_url}/v1",
            model="loopback",
            clearance="public",
            fim=True,
            timeout=10.0,
        )
    )
    if path == "cloud":
        builder.route("public", "cloud")
    return builder.toml()


FUNCTION = '''def fizzbuzz(n):
    """Return "Fizz" for multiples of 3, "Buzz" for multiples of 5, "FizzBuzz" for both."""
    '''


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def collector(root: Path) -> Any:
    """A niced ``onbox collector serve`` on loopback; yields its base URL."""
    port = _free_port()
    process = subprocess.Popen(
        ["nice", "-n", "19", sys.executable, "-m", "onbox", "collector", "serve",
         "--db", f"sqlite:///{root / 'collector.db'}", "--port", str(port),
         "--trust-on-first-use"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "ONBOX_DATA_DIR": str(root / "collector-data")},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the collector did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def _repo(root: Path) -> Path:
    """A project the policy labels public (its remote matches ``[[repos]]``)."""
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(
        ["git", "-C", str(root), "remote", "add", "origin", "https://github.com/acme/site.git"],
        check=True,
    )
    return root


async def _session(
    tmp: Path, name: str, policy_text: str, model_path: str | None, max_tokens: int
) -> Session:
    policy = tmp / f"policy-{name}.toml"
    policy.write_text(policy_text)
    env = {
        **os.environ,
        "ONBOX_DATA_DIR": str(tmp / f"data-{name}"),
        "ONBOX_TRUST_ROOT": str(tmp / "no-trust-root.json"),
        # a model worker of each server's own: both get the same prompt each run, and
        # neither may find it in the other's KV cache (nobody else's worker is used either)
        "ONBOX_RUNTIME_DIR": str(tmp / f"run-{name}"),
    }
    env.pop("ONBOX_JOURNAL_DIR", None)
    options: dict[str, Any] = {
        "policy": {"path": str(policy)},
        "completion": {"debounceMs": 0, "maxTokens": max_tokens},
    }
    if model_path is not None:
        options["model"] = {"path": model_path}
    session = Session(env, options)
    await session.start()
    await asyncio.wait_for(session.ready.wait(), 180)
    return session


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


async def measure(path: str, runs: int, tmp: Path, collector_url: str) -> dict[str, Any]:
    """Alternate completions between a shipping and a non-shipping server on ``path``."""
    with RecordingServer() as cloud:
        cloud.set_reply("return a + b")
        cloud.set_latency(0.05)
        audit = f'[audit]\ncollector_url = "{collector_url}"\nship_minutes = {SHIP_MINUTES}\n'
        model = str(tmp / "no-model.gguf") if path == "cloud" else None
        tokens = 16
        plain = await _session(tmp, f"{path}-plain", _policy(cloud.url, path), model, tokens)
        shipping = await _session(
            tmp, f"{path}-ship", _policy(cloud.url, path, audit), model, tokens
        )
        repo = _repo(tmp / f"site-{path}")
        times: dict[str, list[float]] = {"plain": [], "shipping": []}
        empty = {"plain": 0, "shipping": 0}
        cpu: dict[str, float] = {}
        try:
            for i in range(runs + 1):  # run 0 of each warms up connections and caches
                if i == 1:  # the servers' own CPU time (not their model workers')
                    cpu = {
                        "plain": -_cpu_seconds(plain.pid),
                        "shipping": -_cpu_seconds(shipping.pid),
                    }
                    wall = -time.perf_counter()
                order = (("plain", plain), ("shipping", shipping))
                for name, session in order if i % 2 == 0 else order[::-1]:
                    # the same prompt for both servers, a new one each run (no KV reuse)
                    text = f"# {path} run {i}\n" + FUNCTION
                    doc = repo / f"{name}_{i}.py"
                    doc.write_text(text)
                    uri = doc.as_uri()
                    session.open(uri, text)
                    elapsed, result = await session.complete(uri, *end_of(text))
                    session.close(uri)
                    if i:
                        times[name].append(elapsed)
                        empty[name] += not (result and getattr(result, "items", None))
            wall += time.perf_counter()
            cpu["plain"] += _cpu_seconds(plain.pid)
            cpu["shipping"] += _cpu_seconds(shipping.pid)
            health = await shipping.health()
        finally:
            await plain.stop()
            await shipping.stop()
    state = json.loads((tmp / f"data-{path}-ship" / "ship-state.json").read_text())
    cloud_requests = len(cloud.requests)
    plain_s, ship_s = _stats(times["plain"]), _stats(times["shipping"])
    pairs = [s - p for s, p in zip(times["shipping"], times["plain"], strict=True)]
    return {
        "path": path,
        "runs": runs,
        "plain": plain_s,
        "shipping": ship_s,
        "p50_ratio": ship_s["p50_ms"] / plain_s["p50_ms"],
        "p95_ratio": ship_s["p95_ms"] / plain_s["p95_ms"],
        "paired_median_delta_ms": statistics.median(pairs) * 1000,
        "server_cpu_s": cpu,
        "wall_s": wall,
        # what shipping nonstop costs the workstation, whatever else the machine runs
        "shipping_cpu_share_of_a_core": (cpu["shipping"] - cpu["plain"]) / wall,
        "acked_seq": state.get("acked_seq"),
        "last_ship_error": state.get("last_error"),
        "cloud_requests": cloud_requests,
        "empty_completions": empty,
        "journal_ok": bool(getattr(health, "journal", None) and health.journal.writable),
    }


async def main_async(runs: int, paths: list[str]) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="onbox-ship-bench-"))
    started = time.monotonic()
    load_before = os.getloadavg()
    with collector(tmp) as url:
        results = [await measure(p, runs, tmp, url) for p in paths]
        devices = httpx.get(url + "/v1/devices", timeout=10).json()
    return {
        "results": results,
        "collector_devices": [
            {"device": d["device"], "entries": d["entries"], "chain": d["chain"]} for d in devices
        ],
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "seconds": round(time.monotonic() - started, 1),
        "cpus": os.cpu_count(),
        "ship_minutes": SHIP_MINUTES,
        "target_ratio": 1.01,
    }


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="completion latency: a server shipping its journal nonstop vs one that does not "
        "(same run, interleaved)"
    )
    for col in ("path", "runs", "no shipping p50 / p95", "shipping p50 / p95", "p50 ratio",
                "p95 ratio", "paired Δ median", "shipping CPU", "target"):  # fmt: skip
        table.add_column(col)
    for r in report["results"]:
        table.add_row(
            r["path"],
            str(r["runs"]),
            f"{r['plain']['p50_ms']:.1f} / {r['plain']['p95_ms']:.1f} ms",
            f"{r['shipping']['p50_ms']:.1f} / {r['shipping']['p95_ms']:.1f} ms",
            f"{r['p50_ratio']:.3f}",
            f"{r['p95_ratio']:.3f}",
            f"{r['paired_median_delta_ms']:+.1f} ms",
            f"{r['shipping_cpu_share_of_a_core']:.1%} of a core",
            "≤ 1.01",
        )
    console = Console(width=160)
    console.print(table)
    for r in report["results"]:
        console.print(
            f"{r['path']}: shipped up to seq {r['acked_seq']} "
            f"(last error: {r['last_ship_error']}); cloud requests {r['cloud_requests']}; "
            f"empty completions {r['empty_completions']}"
        )
    before, after = report["loadavg_before"], report["loadavg_after"]
    console.print(
        f"{report['cpus']} CPUs; load average before {before[0]:.2f} {before[1]:.2f} "
        f"{before[2]:.2f}, after {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}; "
        f"{report['seconds']} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--paths", default="on-box,cloud")
    args = parser.parse_args()
    report = asyncio.run(main_async(args.runs, args.paths.split(",")))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_shipping.json").write_text(json.dumps(report, indent=2, default=str))
    print_table(report)


if __name__ == "__main__":
    main()
