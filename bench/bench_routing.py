"""Routing overhead and the cloud path against a direct HTTP call.

    python bench/bench_routing.py [--runs 200] [--latency-ms 0,20]

1. **Overhead** (target: median <= 2 ms): one ``Router.complete`` on a 2,000-line file
   with 20 other open documents — planning, the fresh content scan of the window,
   redaction, context selection, scanning and redaction of the snippets, and rendering the
   request body — with a destination whose ``send`` returns at once and a journal kept
   in memory, so neither the network nor the disk is counted. Measured twice in the same
   run: with decisions handed in (no re-decision), and with the egress gate re-deciding
   the document and all 20 others through the real classifier on a real git repository
   (cached per version, re-checked by ``stat``), which is what ``onbox serve`` does.
2. **Cloud path** (target: ratio <= 1.05): ``Router.complete`` to a loopback recording
   server (real httpx, real signed journal with its durable egress entry) against a
   direct ``httpx`` streaming POST of the same body to the same server, interleaved in
   the same run. Measured with the server answering at once (the worst case for the
   ratio: everything Onbox adds is exposed) and with a simulated model latency.

Prints a table and writes ``bench/results/bench_routing.json``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support

from onbox.audit import open_journal
from onbox.classification.authority import LabelAuthority
from onbox.classification.classifier import Classifier
from onbox.classification.content import scan_content
from onbox.classification.decision import Decision, Reason
from onbox.classification.policy import Policy, parse_policy
from onbox.inference.destination import CancelToken, Completion, CompletionRequest
from onbox.inference.openai_compat import OpenAIDestination
from onbox.inference.remote import DeltaCallback, PreparedRequest, build_destinations
from onbox.inference.routing import DocumentView, RequestSettings, Router
from tests.support.journal import MemoryJournal
from tests.support.policies import PolicyBuilder
from tests.support.recording_server import RecordingServer


def routing_policy(url: str) -> str:
    """The app repo is public and goes to the loopback corp server; secrets are internal."""
    return (
        PolicyBuilder("bench-routing", extra='[content]\nsecrets = "internal"\npii = "internal"')
        .repo("github.com/acme/app", "public")
        .destination(
            "corp",
            kind="openai",
            base_url=f"{url}/v1",
            model="coder",
            clearance="internal",
            timeout=10.0,
        )
        .route("public", "corp")
        .route("internal", "corp")
        .toml()
    )


class _OnBox:
    name, kind, clearance = "on-box", "llama-cpp", "restricted"

    def complete(self, request: CompletionRequest, cancel: CancelToken) -> Completion:
        return Completion(text="pass", model="on-box")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind}


class _NoNetwork(OpenAIDestination):
    """Renders the real body, then answers without sending it."""

    def send(
        self,
        prepared: PreparedRequest,
        cancel: CancelToken,
        *,
        on_delta: DeltaCallback | None = None,
    ) -> Completion:
        return Completion(text="x", model="none", prompt_sha256=prepared.sha256)


def _source(lines: int, seed: int) -> str:
    out = []
    for i in range(lines):
        if i == 1001:
            out.append('    AWS_KEY = "AKIAABCDEFGHIJKLMNOP"  # pasted by mistake\n')
        elif i % 40 == 0:
            out.append(f"def handler_{seed}_{i}(request, session):\n")
        elif i % 7 == 0:
            out.append(f"    # step {i}: validate the input and call the service\n")
        else:
            out.append(f"    value_{i} = compute(request.items[{i % 13}], session, {i})\n")
    return "".join(out)


def _documents(policy: Policy) -> tuple[DocumentView, list[DocumentView]]:
    labels = [policy.scale.parse(n) for n in ("public", "internal", "restricted")]

    def view(uri: str, text: str, label_index: int, offset: int) -> DocumentView:
        findings = scan_content(text, "python", policy)
        label = max([labels[label_index], *(f.label for f in findings)])
        decision = Decision(
            label, (Reason("repo-tag", label, "bench"),), policy.id, findings=findings
        )
        return DocumentView(uri, uri[7:], text, offset, "python", decision)

    main_text = _source(2000, 0)
    offset = main_text.index("AWS_KEY") + 200
    current = view("file:///repo/app/main.py", main_text, 0, offset)
    others = [view(f"file:///repo/app/m{i}.py", _source(300, i), i % 3, 0) for i in range(20)]
    return current, others


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _repo_documents(
    policy: Policy, root: Path, labeller: LabelAuthority
) -> tuple[DocumentView, list[DocumentView]]:
    """The same documents as files of a real git repository, decided by the classifier."""
    import subprocess

    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(
        ["git", "-C", str(root), "remote", "add", "origin", "git@github.com:acme/app.git"],
        check=True,
    )
    (root / ".gitattributes").write_text(
        "internal/** onbox-label=internal\nrestricted/** onbox-label=restricted\n"
    )
    folders = ("public", "internal", "restricted")

    def view(rel: str, text: str, offset: int) -> DocumentView:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        uri = path.as_uri()
        decision = labeller.decide(uri, text, 1, "python")
        return DocumentView(uri, rel, text, offset, "python", decision, 1)

    main_text = _source(2000, 0)
    current = view("public/main.py", main_text, main_text.index("AWS_KEY") + 200)
    others = [view(f"{folders[i % 3]}/m{i}.py", _source(300, i), 0) for i in range(20)]
    return current, others


def measure_overhead(policy: Policy, runs: int, repo: Path | None = None) -> dict[str, float]:
    """Router.complete with no network and no disk (re-deciding at the gate if ``repo``)."""
    corp = _NoNetwork(policy.destinations["corp"], api_key=None)
    labeller = LabelAuthority(Classifier(policy)) if repo is not None else None
    router = Router(policy, {"corp": corp, "on-box": _OnBox()}, MemoryJournal(), labeller=labeller)
    if repo is not None and labeller is not None:
        current, others = _repo_documents(policy, repo, labeller)
    else:
        current, others = _documents(policy)
    settings = RequestSettings()
    routed = router.complete(current, others, settings, CancelToken())
    assert routed.destination == "corp" and routed.redactions, routed
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        router.complete(current, others, settings, CancelToken())
        samples.append(time.perf_counter() - start)
    corp.close()
    return {
        "median_ms": _median_ms(samples),
        "p90_ms": statistics.quantiles(samples, n=10)[-1] * 1000,
        "redactions": float(sum(routed.redactions.values())),
    }


def measure_cloud_path(
    policy: Policy,
    server: RecordingServer,
    runs: int,
    journal_dir: Path,
    *,
    real_journal: bool = True,
) -> dict[str, float]:
    """Router.complete vs a direct httpx call of the same body, interleaved."""
    destinations = build_destinations(policy, _OnBox())
    journal = open_journal(journal_dir / "journal", device_key_dir=journal_dir / "keys")
    router = Router(policy, destinations, journal if real_journal else MemoryJournal())
    current, others = _documents(policy)
    settings = RequestSettings()
    router.complete(current, others, settings, CancelToken())
    body = server.requests[-1].body
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    url = f"{server.url}/v1/completions"
    direct_client = httpx.Client(timeout=10.0, trust_env=False)

    def direct() -> None:
        with direct_client.stream("POST", url, content=body, headers=headers) as resp:
            for line in resp.iter_lines():
                if line.startswith("data:"):
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    json.loads(data)

    def routed() -> None:
        router.complete(current, others, settings, CancelToken())

    timed: dict[str, list[float]] = {"router": [], "direct": []}
    calls: dict[str, Callable[[], None]] = {"router": routed, "direct": direct}
    for _ in range(5):
        direct()
        routed()
    for i in range(runs):
        order = ("router", "direct") if i % 2 else ("direct", "router")
        for name in order:
            start = time.perf_counter()
            calls[name]()
            timed[name].append(time.perf_counter() - start)
    direct_client.close()
    journal.close()
    for dest in destinations.values():
        close = getattr(dest, "close", None)
        if close is not None:
            close()
    router_ms, direct_ms = _median_ms(timed["router"]), _median_ms(timed["direct"])
    return {
        "router_ms": router_ms,
        "direct_ms": direct_ms,
        "ratio": router_ms / direct_ms,
        "journal_append_ms": _journal_append_ms(journal_dir / "append"),
    }


def _journal_append_ms(directory: Path, runs: int = 50) -> float:
    """Median cost of one durable egress entry on this disk (part of the router's time)."""
    journal = open_journal(directory / "journal", device_key_dir=directory / "keys")
    body = {"destination": "corp", "promptSha256": "0" * 64, "bytes": 6000, "label": "public"}
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        journal.append("egress", body, durable=True)
        samples.append(time.perf_counter() - start)
    journal.close()
    return _median_ms(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument(
        "--latency-ms", default="0,20,100", help="simulated model latencies, comma-separated"
    )
    args = parser.parse_args()
    results: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine()}
    with RecordingServer() as server, tempfile.TemporaryDirectory() as tmp:
        policy = parse_policy(routing_policy(server.url).encode(), "bench-routing.toml")
        overhead = measure_overhead(policy, args.runs)
        gated = measure_overhead(policy, args.runs, Path(tmp) / "repo")
        results["overhead"] = {**overhead, "target_ms": 2.0, "lines": 2000, "open_documents": 20}
        results["overhead_with_redecision"] = {**gated, "target_ms": 2.0}
        rows = [
            (
                "routing + context + redaction, decisions handed in (median)",
                f"{overhead['median_ms']:.3f} ms",
                "",
            ),
            ("  p90", f"{overhead['p90_ms']:.3f} ms", ""),
            (
                "same + gate re-decision of all 21 documents (median)",
                f"{gated['median_ms']:.3f} ms",
                "<= 2 ms",
            ),
            ("  p90", f"{gated['p90_ms']:.3f} ms", ""),
            ("  re-decision / handed in", f"{gated['median_ms'] / overhead['median_ms']:.2f}x", ""),
        ]
        results["cloud_path"] = []
        for i, latency in enumerate(float(x) for x in args.latency_ms.split(",")):
            server.set_latency(latency / 1000)
            path = measure_cloud_path(policy, server, max(20, args.runs // 4), Path(tmp) / f"j{i}")
            results["cloud_path"].append(
                {**path, "server_latency_ms": latency, "target_ratio": 1.05}
            )
            rows.append(
                (
                    f"cloud path, server latency {latency:g} ms: Router / direct httpx",
                    f"{path['router_ms']:.2f} / {path['direct_ms']:.2f} ms = {path['ratio']:.3f}",
                    "<= 1.05",
                )
            )
            rows.append(
                (
                    "  of which: durable journal append (median)",
                    f"{path['journal_append_ms']:.2f} ms",
                    "",
                )
            )
            bare = measure_cloud_path(
                policy, server, max(20, args.runs // 4), Path(tmp) / f"m{i}", real_journal=False
            )
            results["cloud_path"][-1]["without_journal"] = bare
            rows.append(
                (
                    "  same, journal in memory (Onbox's own overhead)",
                    f"{bare['router_ms']:.2f} / {bare['direct_ms']:.2f} ms = {bare['ratio']:.3f}",
                    "",
                )
            )
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'result':<32}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<32}  {target}")
    out = Path(__file__).resolve().parent / "results" / "bench_routing.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
