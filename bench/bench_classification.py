"""Benchmark the classifier on a generated monorepo.

    python bench/bench_classification.py [--files 20000] [--owners 1000] [--attrs 200]
    python bench/bench_classification.py --incremental-only   # the 5 MB section alone

Builds a repository (20,000 files, 1,000 CODEOWNERS rules, 200 attribute lines by
default) in a temporary directory, then measures: a cold decision for one file
(repository discovery and the pinned root-commit check included), the warm decision p50/p99 with unchanged text, the
content scan per 100 KB, the full report (plus HTML rendering), ``policy diff`` between
the policy and its next serial (a tag mapped higher), and the whole-document
incremental scan of a 5 MB file: the cold scan, an unchanged rescan, and the re-label
after one keystroke (through the classifier, and the content scan alone with a
tree-sitter detector), each beside a from-scratch scan of the same text in the same run.
Prints a table and writes ``bench/results/classification.json``. Targets are printed
beside each number; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from onbox.classification.classifier import Classifier
from onbox.classification.content import ContentScanner
from onbox.classification.policy import Policy, parse_policy
from onbox.classification.policy_diff import diff_policies
from onbox.classification.report import build_report
from onbox.classification.report_html import render_html

POLICY = b"""
[policy]
id = "bench"
default_label = "restricted"

[[repos]]
match = "github.com/acme/monorepo"
label = "public"

[tags]
acme = "internal"
payments = "restricted"
docs = "public"

[owners]
"@acme/team-0" = "restricted"
"@acme/team-1" = "internal"

[content]
secrets = "restricted"
pii = "restricted"

[[detectors]]
name = "patient-id"
kind = "regex"
pattern = 'PAT-[0-9]{8}'
label = "restricted"
"""

BODY = '''"""Module {i} of service {s}."""

import logging

logger = logging.getLogger(__name__)


def handler_{i}(request: dict[str, object]) -> dict[str, object]:
    """Handle one request for service {s}."""
    value = request.get("value", {i})
    logger.info("handling %s", value)
    total = 0
    for step in range({i} % 17 + 3):
        total += step * {s}
    return {{"ok": True, "total": total, "service": "svc{s}"}}
'''
SECRET = 'API_TOKEN = "ghp_{}"\n'
PII = 'CUSTOMER_CARD = "4111 1111 1111 1111"\n'


def generate(root: Path, files: int, owners: int, attrs: int) -> list[Path]:
    """Write the repository; return the paths of the files."""
    rng = random.Random(7)
    services = max(files // 100, 1)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    with open(root / ".git" / "config", "a", encoding="utf-8") as cfg:
        cfg.write('[remote "origin"]\n\turl = git@github.com:Acme/monorepo.git\n')
    paths = []
    for index in range(files):
        s, i = index % services, index // services
        directory = root / "services" / f"svc{s}" / ("src" if i % 4 else "lib")
        directory.mkdir(parents=True, exist_ok=True)
        text = BODY.format(i=i, s=s)
        if index % 97 == 0:
            text += SECRET.format(
                "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789", k=36))
            )
        if index % 211 == 0:
            text += PII
        path = directory / f"module{i}.py"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    rules = ["*       @acme/platform"]
    for n in range(owners - 1):
        s = n % services
        rules.append(
            f"/services/svc{s}/{'src' if n % 2 else 'lib'}/module{n // services}.py @acme/team-{n % 60}"
            if n % 3
            else f"/services/svc{s}/ @acme/team-{n % 60}"
        )
    (root / ".github").mkdir()
    (root / ".github" / "CODEOWNERS").write_text("\n".join(rules) + "\n", encoding="utf-8")
    lines = []
    for n in range(attrs - 20):
        tag = ("payments", "docs", "acme")[n % 3]
        lines.append(f"services/svc{n % services}/** onbox-tags={tag}")
    (root / ".gitattributes").write_text(
        "\n".join(lines) + "\n*.pem onbox-label=restricted\n", encoding="utf-8"
    )
    for n in range(19):  # nested attribute files
        nested = root / "services" / f"svc{n}" / ".gitattributes"
        nested.write_text(f"module{n}*.py onbox-label=internal\n", encoding="utf-8")
    # One commit, so that HEAD has a root commit for the policy to pin.
    git = ["git", "-C", str(root), "-c", "user.name=bench", "-c", "user.email=b@example.com"]
    subprocess.run([*git, "add", ".github", ".gitattributes"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bench"], check=True)
    return paths


def pinned_policy(root: Path, text: bytes = POLICY, source: str = "bench-policy.toml") -> Policy:
    """The bench policy with the monorepo's rule pinned to its root commit."""
    head = subprocess.run(
        ["git", "-C", str(root), "rev-list", "--max-parents=0", "HEAD"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout.split()[0]
    pin = f'label = "public"\nroot_commits = ["{head}"]\n'.encode()
    return parse_policy(text.replace(b'label = "public"\n', pin, 1), source)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


STRIPE = b"""
[[detectors]]
name = "stripe-sdk"
kind = "tree-sitter"
language = "python"
query = '(import_statement name: (dotted_name) @m (#eq? @m "stripe"))'
label = "restricted"
"""


def big_document(size: int) -> str:
    """About ``size`` characters of Python with a secret every ~100 functions."""
    rng = random.Random(11)
    parts = ["import stripe\n"]
    total, i = 0, 0
    while total < size:
        part = BODY.format(i=i, s=i % 50)
        if i % 101 == 7:
            part += SECRET.format("".join(rng.choices("ABCDEFabcdef0123456789", k=36)))
        parts.append(part)
        total += len(part)
        i += 1
    return "".join(parts)


def _keystrokes(text: str, n: int) -> list[str]:
    """``n`` successive texts, each one character typed at a different line start."""
    texts = []
    for k in range(n):
        pos = text.index("\n", len(text) * (k + 1) // (n + 2)) + 1
        text = text[:pos] + "x" + text[pos:]
        texts.append(text)
    return texts


def measure_incremental(root: Path, policy: Policy, size: int) -> dict[str, object]:
    """Cold, unchanged and one-keystroke costs of the whole-document scan of a large file."""
    text = big_document(size)
    path = root / "services" / "big.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    uri = path.as_uri()
    classifier = Classifier(policy)
    start = time.perf_counter()
    classifier.classify(uri, text, 1, language="python")
    cold = time.perf_counter() - start
    start = time.perf_counter()
    classifier.classify(uri, text, 1, language="python")
    unchanged = time.perf_counter() - start
    relabel = []
    for version, typed in enumerate(_keystrokes(text, 30), start=2):
        start = time.perf_counter()
        decision = classifier.classify(uri, typed, version, language="python")
        relabel.append(time.perf_counter() - start)
    fresh = []
    for typed in _keystrokes(text, 3):
        start = time.perf_counter()
        ContentScanner().scan(typed, "python", policy)  # nothing cached: a full scan
        fresh.append(time.perf_counter() - start)

    with_ts = parse_policy(POLICY + STRIPE, "bench-policy-ts.toml")
    scanner = ContentScanner()
    start = time.perf_counter()
    scanner.scan(text, "python", with_ts, key="big")
    ts_cold = time.perf_counter() - start
    ts_keys = []
    for typed in _keystrokes(text, 30):
        start = time.perf_counter()
        found = scanner.scan(typed, "python", with_ts, key="big")
        ts_keys.append(time.perf_counter() - start)
    assert any(f.type == "stripe-sdk" for f in found)  # the import on line 1 is still seen
    median = statistics.median(relabel)
    return {
        "size_chars": len(text),
        "findings": len(decision.findings),
        "cold_ms": _ms(cold),
        "unchanged_ms": _ms(unchanged),
        "keystroke_relabel_ms": {
            "p50": _ms(median),
            "max": _ms(max(relabel)),
            "target": 20,
        },
        "full_scan_ms": _ms(statistics.median(fresh)),
        "full_over_keystroke": round(statistics.median(fresh) / median, 1),
        "tree_sitter": {
            "cold_ms": _ms(ts_cold),
            "keystroke_p50_ms": _ms(statistics.median(ts_keys)),
            "keystroke_max_ms": _ms(max(ts_keys)),
        },
    }


def _incremental_rows(inc: dict[str, Any]) -> list[tuple[str, str, str]]:
    mb = inc["size_chars"] / 1e6
    return [
        (f"{mb:.1f} MB file: cold classify", f"{inc['cold_ms']} ms", ""),
        (f"{mb:.1f} MB file: unchanged text", f"{inc['unchanged_ms']} ms", ""),
        (
            f"{mb:.1f} MB file: re-label after a keystroke p50",
            f"{inc['keystroke_relabel_ms']['p50']} ms",
            "<= 20 ms",
        ),
        ("  … max of 30", f"{inc['keystroke_relabel_ms']['max']} ms", ""),
        (
            "  … full scan of the same text (ratio)",
            f"{inc['full_scan_ms']} ms ({inc['full_over_keystroke']}x)",
            "",
        ),
        ("  + tree-sitter detector: cold scan", f"{inc['tree_sitter']['cold_ms']} ms", ""),
        (
            "  + tree-sitter detector: keystroke p50",
            f"{inc['tree_sitter']['keystroke_p50_ms']} ms",
            "<= 20 ms",
        ),
        (
            "  + tree-sitter detector: keystroke max",
            f"{inc['tree_sitter']['keystroke_max_ms']} ms",
            "",
        ),
    ]


def _print_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'result':>22}  target")
    for name, value, target_text in rows:
        print(f"{name:<{width}}  {value:>22}  {target_text}")


def main() -> int:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--owners", type=int, default=1_000)
    parser.add_argument("--attrs", type=int, default=200)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "classification.json")
    )
    parser.add_argument("--keep", help="generate the repo here and keep it")
    parser.add_argument("--big", type=int, default=5_000_000, help="large file size (chars)")
    parser.add_argument(
        "--incremental-only", action="store_true", help="only the large-file section"
    )
    args = parser.parse_args()
    policy: Policy = parse_policy(POLICY, "bench-policy.toml")
    if args.incremental_only:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "repo"
            subprocess.run(["git", "init", "-q", str(root)], check=True)
            inc = measure_incremental(root, policy, args.big)
        _print_table(_incremental_rows(inc))
        out = Path(args.out).with_name("classification-incremental.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"incremental": inc}, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp) / "monorepo"
        t0 = time.perf_counter()
        paths = generate(root, args.files, args.owners, args.attrs)
        generate_s = time.perf_counter() - t0
        policy = pinned_policy(root)  # every decision checks the root commits
        target = paths[len(paths) // 2 + 1]

        cold = []
        for _ in range(15):
            start = time.perf_counter()
            decision = Classifier(policy).classify_path(target)
            cold.append(time.perf_counter() - start)

        classifier = Classifier(policy)
        text = target.read_text(encoding="utf-8")
        uri = target.as_uri()
        classifier.classify(uri, text, 1)
        warm = []
        for _ in range(3000):
            start = time.perf_counter()
            classifier.classify(uri, text, 1)
            warm.append(time.perf_counter() - start)
        warm.sort()

        source = "".join(p.read_text(encoding="utf-8") for p in paths[:200])
        chunk = (source * (100_000 // len(source) + 1))[:100_000]
        dirty = (
            chunk[:50_000]
            + SECRET.format("a1B2" * 9)
            + 'k = "q8ZrT3vN1xW7pL2mK9sB4dF6hJ0cY5aE"\n'
            + chunk[50_000:]
        )
        scan = {}
        for name, body in (("clean", chunk), ("with-secrets", dirty[:100_000])):
            runs = []
            for _ in range(20):
                start = time.perf_counter()
                ContentScanner().scan(body, "python", policy)  # cold: nothing cached
                runs.append(time.perf_counter() - start)
            scan[name] = statistics.median(runs)

        incremental = measure_incremental(root, policy, args.big)

        start = time.perf_counter()
        report = build_report(root, policy)
        report_s = time.perf_counter() - start
        start = time.perf_counter()
        page = render_html(report)
        html_s = time.perf_counter() - start

        # Serial N+1 makes the docs tag internal: what does it change?
        candidate = pinned_policy(
            root,
            POLICY.replace(b'docs = "public"', b'docs = "internal"'),
            "bench-policy-next.toml",
        )
        start = time.perf_counter()
        diff = diff_policies(policy, candidate, [root])
        diff_s = time.perf_counter() - start

    results = {
        "machine": platform.platform(),
        "python": sys.version.split()[0],
        "files": args.files,
        "codeowners_rules": args.owners,
        "attribute_lines": args.attrs,
        "generate_s": round(generate_s, 2),
        "cold_decision_ms": {
            "median": _ms(statistics.median(cold)),
            "max": _ms(max(cold)),
            "target": 50,
        },
        "warm_decision_ms": {
            "p50": _ms(warm[len(warm) // 2]),
            "p99": _ms(warm[int(len(warm) * 0.99)]),
            "target_p99": 1,
        },
        "content_scan_ms_per_100kb": {k: _ms(v) for k, v in scan.items()} | {"target": 5},
        "report_s": round(report_s, 2),
        "report_target_s": 60,
        "html_render_s": round(html_s, 2),
        "policy_diff_s": round(diff_s, 2),
        "policy_diff_target_s": 60,
        "policy_diff_changed": len(diff.changes),
        "html_bytes": len(page),
        "by_label": report.by_label,
        "review_candidates": len(report.review_candidates),
        "sample_label": decision.label.name,
        "incremental": incremental,
    }
    rows = [
        (
            "cold decision (discovery incl.), median",
            f"{results['cold_decision_ms']['median']} ms",
            "<= 50 ms",
        ),
        ("cold decision, max of 15", f"{results['cold_decision_ms']['max']} ms", ""),
        ("warm decision p50", f"{results['warm_decision_ms']['p50']} ms", ""),
        ("warm decision p99", f"{results['warm_decision_ms']['p99']} ms", "<= 1 ms"),
        (
            "content scan / 100 KB (clean)",
            f"{results['content_scan_ms_per_100kb']['clean']} ms",
            "<= 5 ms",
        ),
        (
            "content scan / 100 KB (secrets)",
            f"{results['content_scan_ms_per_100kb']['with-secrets']} ms",
            "<= 5 ms",
        ),
        (f"full report, {args.files} files", f"{results['report_s']} s", "<= 60 s"),
        ("HTML render", f"{results['html_render_s']} s ({len(page) // 1024} KiB)", ""),
        (
            f"policy diff N -> N+1, {args.files} files ({len(diff.changes)} change)",
            f"{results['policy_diff_s']} s",
            "<= 60 s",
        ),
        *_incremental_rows(incremental),
    ]
    _print_table(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
