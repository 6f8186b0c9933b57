"""Bedrock and Vertex through the router against a direct signed request, and the cost report.

    python bench/bench_destinations.py [--runs 30] [--latency-ms 100] [--entries 1000000]

1. **Routing overhead per destination** (target: ratio <= 1.05 at 100 ms model latency,
   the method of ``bench/bench_routing.py``): ``Router.complete`` through the egress gate
   — fresh content scan, context, redaction, the durable write-ahead entry in a real
   signed journal, SigV4 signing (Bedrock) or the cached ADC token (Vertex), streaming and
   parsing the answer — against a direct request of the same body to the same loopback
   stand-in, signed with botocore / authorised with the same google-auth token and parsed
   the same way, interleaved in the same run. Both stand-ins verify every request.
2. **``onbox journal stats --cost --no-verify``** over a journal of ``--entries``
   completion entries (target: <= 10 s), run as the real command in a subprocess, with
   the pure tally timed in-process beside it.

Prints a table and writes ``bench/results/bench_destinations.json``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support

from onbox.audit import open_journal
from onbox.audit.cost import cost_report, tally_journal
from onbox.classification.decision import Decision, Reason
from onbox.classification.labels import Label
from onbox.classification.policy import Policy, parse_policy
from onbox.inference.destination import CancelToken, Completion, CompletionRequest
from onbox.inference.eventstream import EventStreamDecoder
from onbox.inference.remote import RemoteDestination, build_destinations
from onbox.inference.routing import DocumentView, RequestSettings, Router
from tests.support import bedrock_server, vertex_server
from tests.support.bedrock_server import BedrockServer
from tests.support.journal import MemoryJournal
from tests.support.vertex_server import VertexServer

POLICY = """
[policy]
id = "bench-destinations"
labels = ["public", "internal", "restricted"]
default_label = "restricted"

[destinations.bedrock]
kind = "bedrock"
clearance = "internal"
region = "{region}"
base_url = "{aws}"
model = "anthropic.claude-3-5-haiku-20241022-v1:0"
timeout = 10.0
cost = {{ input_per_mtok = 0.80, output_per_mtok = 4.00 }}

[destinations.vertex]
kind = "vertex"
clearance = "internal"
project = "{project}"
location = "{location}"
base_url = "{gcp}"
model = "gemini-2.5-flash"
timeout = 10.0
cost = {{ input_per_mtok = 0.30, output_per_mtok = 2.50 }}

[destinations.gpu]
kind = "openai"
clearance = "internal"
base_url = "https://vllm.corp.example/v1"
cost = {{ hardware = "L40S", hardware_cost = 9500, lifetime_years = 3, power_watts = 450, electricity_per_kwh = 0.25, utilisation = 0.4, prefill_tokens_per_second = 6000, decode_tokens_per_second = 90 }}

[routes]
public = ["{first}"]
internal = ["{first}"]
"""


class _OnBox:
    name, kind, clearance = "on-box", "llama-cpp", "restricted"

    def complete(self, request: CompletionRequest, cancel: CancelToken) -> Completion:
        return Completion(text="pass", model="on-box")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind}


def _documents() -> tuple[DocumentView, list[DocumentView]]:
    public = Label(0, "public")

    def view(i: int, lines: int) -> DocumentView:
        text = "".join(f"def f{i}_{n}(x):\n    return x + {n}\n" for n in range(lines // 2))
        decision = Decision(
            public, (Reason("repo-tag", public, "bench"),), "bench", path=f"app/m{i}.py"
        )
        return DocumentView(
            f"file:///repo/app/m{i}.py", f"app/m{i}.py", text, len(text) // 2, "python", decision
        )

    return view(0, 400), [view(i, 100) for i in range(1, 6)]


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _interleave(calls: Mapping[str, Callable[[], None]], runs: int) -> dict[str, float]:
    for _ in range(3):
        for call in calls.values():
            call()
    timed: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for i in range(runs):
        for name in names if i % 2 else reversed(names):
            start = time.perf_counter()
            calls[name]()
            timed[name].append(time.perf_counter() - start)
    return {name: _median_ms(samples) for name, samples in timed.items()}


def _direct_bedrock(url: str, body: bytes) -> Callable[[], None]:
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials = botocore.session.Session().get_credentials().get_frozen_credentials()
    client = httpx.Client(timeout=10.0, trust_env=False)

    def call() -> None:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/vnd.amazon.eventstream",
        }
        signed = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(credentials, "bedrock", bedrock_server.REGION).add_auth(signed)
        decoder = EventStreamDecoder()
        with client.stream("POST", url, content=body, headers=dict(signed.headers.items())) as r:
            assert r.status_code == 200, r.status_code
            for chunk in r.iter_bytes():
                for message in decoder.feed(chunk):
                    json.loads(message.payload)

    return call


def _direct_vertex(url: str, body: bytes) -> Callable[[], None]:
    import google.auth
    import google.auth.transport.requests

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    credentials.refresh(google.auth.transport.requests.Request())
    client = httpx.Client(timeout=10.0, trust_env=False)

    def call() -> None:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "Authorization": f"Bearer {credentials.token}",
        }
        with client.stream("POST", url, content=body, headers=headers) as resp:
            assert resp.status_code == 200, resp.status_code
            for line in resp.iter_lines():
                if line.startswith("data:"):
                    json.loads(line[5:])

    return call


def measure_destination(
    name: str,
    policy: Policy,
    requests: Callable[[], list[Any]],
    runs: int,
    tmp: Path,
    *,
    real_journal: bool = True,
) -> dict[str, float]:
    """Router.complete through ``name`` vs the direct signed request, interleaved."""
    destinations = build_destinations(policy, _OnBox())
    tag = f"{name}-{real_journal}"
    journal = open_journal(tmp / f"journal-{tag}", device_key_dir=tmp / f"keys-{tag}")
    router = Router(policy, destinations, journal if real_journal else MemoryJournal())
    doc, others = _documents()
    settings = RequestSettings()
    routed = router.complete(doc, others, settings, CancelToken())
    assert routed.destination == name, routed.fallbacks
    sent = requests()[-1]
    assert getattr(sent, "verified", getattr(sent, "authorized", False)), sent
    dest = destinations[name]
    assert isinstance(dest, RemoteDestination)
    url = dest.prepare(CompletionRequest("", "")).url
    direct = (_direct_bedrock if name == "bedrock" else _direct_vertex)(url, sent.body)

    def through_router() -> None:
        result = router.complete(doc, others, settings, CancelToken())
        assert result.destination == name, result.fallbacks

    medians = _interleave({"router": through_router, "direct": direct}, runs)
    journal.close()
    for d in destinations.values():
        if isinstance(d, RemoteDestination):
            d.close()
    unverified = [r for r in requests() if not getattr(r, "verified", getattr(r, "authorized", 0))]
    return {
        "router_ms": medians["router"],
        "direct_ms": medians["direct"],
        "ratio": medians["router"] / medians["direct"],
        "requests_refused_by_stand_in": float(len(unverified)),
    }


def build_cost_journal(directory: Path, entries: int, segments: int = 30) -> None:
    """``entries`` completion entries in ``segments`` daily segments, as the server writes them.

    Lines carry placeholder hashes and signatures: the cost report does not verify (that
    is ``onbox journal verify``, benchmarked in ``bench/bench_journal.py``).
    """
    directory.mkdir(parents=True)
    destinations = [("bedrock", "bedrock"), ("vertex", "vertex"), ("on-box", "llama-cpp")]
    labels = ["public", "internal", "restricted"]
    repos = [f"github.com/acme/repo{i}" for i in range(12)]
    per_segment = entries // segments
    seq = 0
    for s in range(segments):
        day = f"2026-11-{s + 1:02d}"
        lines = []
        for _ in range(per_segment if s < segments - 1 else entries - seq):
            seq += 1
            name, kind = destinations[seq % 3]
            body = {
                "bytesReceived": 912,
                "bytesSent": 7311,
                "destination": {"clearance": "internal", "kind": kind, "model": "m", "name": name},
                "documentSha256": "a" * 64,
                "egressSeq": seq - 1,
                "error": None,
                "fallbacks": [],
                "id": f"c{seq:012x}",
                "label": labels[seq % 3 if kind != "llama-cpp" else 2],
                "latencyMs": 231.5,
                "outcome": "served",
                "path": "app/ledger.py",
                "policy": {"id": "acme", "serial": 42},
                "promptSha256": "b" * 64,
                "reasons": [{"detail": "repo tag", "kind": "repo-tag", "label": "internal"}],
                "redactions": {},
                "repo": repos[seq % len(repos)],
                "tokensIn": 1500 + seq % 500,
                "tokensOut": 20 + seq % 40,
                "uri": "file:///home/dev/acme/app/ledger.py",
            }
            core = json.dumps(
                {
                    "body": body,
                    "key": "k" * 16,
                    "kind": "completion",
                    "prev": "0" * 64,
                    "seq": seq,
                    "time": f"{day}T12:00:00.000000Z",
                    "v": 1,
                },
                separators=(",", ":"),
            )
            lines.append(core[:-1] + f',"hash":"{"h" * 64}","sig":"{"s" * 86}=="}}\n')
        (directory / f"segment-{s + 1:08d}.jsonl").write_text("".join(lines))


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def measure_cost(tmp: Path, entries: int, policy_file: Path) -> dict[str, float]:
    """The real command in a subprocess, and the in-process tally beside it.

    CPU seconds are reported beside wall-clock seconds: on a shared machine the CPU
    figure is the one that does not depend on what else is running.
    """
    directory = tmp / "cost-journal"
    build_cost_journal(directory, entries)
    size = sum(p.stat().st_size for p in directory.iterdir())
    children = _cpu(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "onbox.server.cli",
            "journal",
            "stats",
            "--cost",
            "--no-verify",
            "--json",
            "--dir",
            str(directory),
            "--policy",
            str(policy_file),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    command_s = time.perf_counter() - started
    command_cpu_s = _cpu(resource.RUSAGE_CHILDREN) - children
    report = json.loads(done.stdout)
    assert report["total"]["requests"] == entries, report["total"]
    started = time.perf_counter()
    tally = tally_journal(directory, workers=1)
    tally_s = time.perf_counter() - started
    started = time.perf_counter()
    cost_report(tally, {})
    price_s = time.perf_counter() - started
    return {
        "entries": float(entries),
        "megabytes": size / 1e6,
        "command_s": command_s,
        "command_cpu_s": command_cpu_s,
        "tally_one_process_s": tally_s,
        "price_s": price_s,
        "workers": float(os.cpu_count() or 1),
        "total_spend": float(report["total"]["spend"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
    }
    rows: list[tuple[str, str, str]] = []
    with (
        BedrockServer() as aws,
        VertexServer() as gcp,
        tempfile.TemporaryDirectory(prefix="onbox-bench-") as tmp_name,
    ):
        tmp = Path(tmp_name)
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": bedrock_server.ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": bedrock_server.SECRET_KEY,
                "AWS_SESSION_TOKEN": bedrock_server.SESSION_TOKEN,
                "AWS_CONFIG_FILE": str(tmp / "none"),
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none"),
                "AWS_EC2_METADATA_DISABLED": "true",
                "GOOGLE_APPLICATION_CREDENTIALS": str(gcp.service_account_file(tmp)),
                "CLOUDSDK_CONFIG": str(tmp / "gcloud"),
                "NO_GCE_CHECK": "True",
            }
        )
        for server in (aws, gcp):
            server.set_latency(args.latency_ms / 1000)
        text = POLICY.format(
            region=bedrock_server.REGION,
            aws=aws.url,
            project=vertex_server.PROJECT,
            location=vertex_server.LOCATION,
            gcp=gcp.url,
            first="{first}",
        )
        results["routing"] = {}
        for name, requests in (("bedrock", lambda: aws.requests), ("vertex", lambda: gcp.requests)):
            policy = parse_policy(text.replace("{first}", name).encode(), "bench.toml")
            measured = measure_destination(name, policy, requests, args.runs, tmp)
            results["routing"][name] = {
                **measured,
                "server_latency_ms": args.latency_ms,
                "target_ratio": 1.05,
            }
            rows.append(
                (
                    f"{name}: Router / direct signed request at {args.latency_ms:g} ms",
                    f"{measured['router_ms']:.2f} / {measured['direct_ms']:.2f} ms = "
                    f"{measured['ratio']:.3f}",
                    "<= 1.05",
                )
            )
            bare = measure_destination(name, policy, requests, args.runs, tmp, real_journal=False)
            results["routing"][name]["without_journal"] = bare
            rows.append(
                (
                    "  same, journal in memory (no fsync: Onbox's own work)",
                    f"{bare['router_ms']:.2f} / {bare['direct_ms']:.2f} ms = {bare['ratio']:.3f}",
                    "",
                )
            )
        policy_file = tmp / "policy.toml"
        policy_file.write_text(text.replace("{first}", "bedrock"))
        cost = measure_cost(tmp, args.entries, policy_file)
        results["cost"] = {**cost, "target_s": 10.0}
        rows.append(
            (
                f"journal stats --cost --no-verify, {args.entries:,} entries "
                f"({cost['megabytes']:.0f} MB)",
                f"{cost['command_s']:.2f} s",
                "<= 10 s",
            )
        )
        rows.append(
            ("  CPU seconds (command and its workers)", f"{cost['command_cpu_s']:.2f} s", "")
        )
        rows.append(
            ("  tally in one process (in-process)", f"{cost['tally_one_process_s']:.2f} s", "")
        )
        rows.append(("  of which: pricing and break-even", f"{cost['price_s'] * 1000:.1f} ms", ""))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'result':<32}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<32}  {target}")
    out = Path(__file__).resolve().parent / "results" / "bench_destinations.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
