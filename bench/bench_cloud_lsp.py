"""Cloud path end to end: an LSP completion through ``onbox serve`` vs a direct HTTP call.

The server routes a public file to an OpenAI-compatible loopback server (the recording
server from the tests, answering with a fixed completion after a simulated model
latency). Each run asks the server for an inline completion, then replays the exact
request body the server sent with ``httpx`` to the same endpoint; the two are
interleaved so that both see the same machine. The server's side includes everything
Onbox adds: classification, routing, redaction, the durable (fsynced) egress journal
entry, streaming and post-processing.

    python bench/bench_cloud_lsp.py [--runs 15] [--latency-ms 0,100,300]

Prints a table and writes ``bench/results/bench_cloud_lsp.json``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
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


def cloud_policy(url: str) -> str:
    """The site repo is public and goes to the loopback cloud; the rest stays on-box."""
    return (
        PolicyBuilder("bench-cloud")
        .repo("github.com/acme/site", "public")
        .destination(
            "cloud",
            kind="openai",
            base_url=f"{url}/v1",
            model="loopback",
            clearance="public",
            fim=True,
            timeout=10.0,
        )
        .route("public", "cloud")
        .toml()
    )


async def measure(latency_s: float, runs: int, tmp: Path) -> dict[str, Any]:
    """Median LSP latency and median direct-HTTP latency for one simulated model latency."""
    repo = tmp / f"site-{int(latency_s * 1000)}"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "remote", "add", "origin", "https://github.com/acme/site.git"],
        check=True,
    )
    lsp, direct = [], []
    with RecordingServer() as cloud, httpx.Client(timeout=30) as http:
        cloud.set_reply("return a + b")
        cloud.set_latency(latency_s)
        policy = tmp / f"policy-{int(latency_s * 1000)}.toml"
        policy.write_text(cloud_policy(cloud.url))
        env = {
            **os.environ,
            "ONBOX_DATA_DIR": str(tmp / f"data-{latency_s}"),
            "ONBOX_TRUST_ROOT": str(tmp / "none"),
        }
        session = Session(
            env,
            {
                "policy": {"path": str(policy)},
                "model": {
                    "path": str(tmp / "no-model.gguf")
                },  # the cloud path needs no local model
                "completion": {"debounceMs": 0},
            },
        )
        await session.start()
        await session.ready.wait()
        for i in range(runs + 1):
            text = f"# file {i}\ndef add(a, b):\n    "
            path = repo / f"m{i}.py"
            path.write_text(text)
            uri = path.as_uri()
            session.open(uri, text)
            before = len(cloud.requests)
            elapsed, result = await session.complete(uri, *end_of(text))
            session.close(uri)
            if len(cloud.requests) != before + 1 or not result or not result.items:
                raise RuntimeError("the request did not go to the loopback cloud")
            sent = cloud.requests[-1]
            started = time.perf_counter()
            with http.stream(
                "POST",
                cloud.url + sent.path,
                content=sent.body,
                headers={"content-type": "application/json"},
            ) as r:
                for _ in r.iter_bytes():
                    pass
            took = time.perf_counter() - started
            if i == 0:
                continue  # warm-up: connection pools, imports
            lsp.append(elapsed)
            direct.append(took)
        await session.stop()
    return {
        "latency_ms": latency_s * 1000,
        "lsp_median_ms": statistics.median(lsp) * 1000,
        "direct_median_ms": statistics.median(direct) * 1000,
        "ratio": statistics.median(lsp) / statistics.median(direct),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--latency-ms", default="0,100,300")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="onbox-cloud-bench-"))
    latencies = [float(x) / 1000 for x in args.latency_ms.split(",")]
    results = [asyncio.run(measure(lat, args.runs, tmp)) for lat in latencies]
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_cloud_lsp.json").write_text(
        json.dumps({"results": results, "target_ratio": 1.05}, indent=2)
    )
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cloud path: LSP end to end vs direct HTTP (same run, interleaved)")
    for col in ("model latency", "LSP median", "direct median", "ratio", "target"):
        table.add_column(col)
    for r in results:
        table.add_row(
            f"{r['latency_ms']:.0f} ms",
            f"{r['lsp_median_ms']:.1f} ms",
            f"{r['direct_median_ms']:.1f} ms",
            f"{r['ratio']:.2f}",
            "≤ 1.05",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
