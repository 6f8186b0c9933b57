"""``onbox classify``: label files, or map a whole repository.

    onbox classify PATH... [--json] [--policy FILE]
    onbox classify --report REPO [--html report.html] [--json] [--policy FILE]
    onbox classify --report REPO --report REPO... | --manifest FILE [--html org.html]

Several repositories (``--report`` repeated, or a manifest: one path a line, ``#``
comments, relative to the manifest) give an organisation rollup: totals by label, a row
per repository and its review candidates (the HTML page, or ``{"repos", "rollup"}`` JSON).

Without ``--policy`` the signed policy in force on this machine is used (or the
built-in fail-closed one when none is). Exit codes: 0 ok, 2 usage error or a policy
that does not load (the message names file, line and key), 3 the repository cannot be
read or the HTML cannot be written.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# The exit codes of onbox.server.cli (restated so that type checkers see ints).
EXIT_OK, EXIT_USAGE, EXIT_ENVIRONMENT = 0, 2, 3


def register(sub: Any) -> None:
    """Add the ``classify`` subcommand."""
    p: argparse.ArgumentParser = sub.add_parser(
        "classify",
        help="show the sensitivity label of files and why, or map a repository",
        description="Label files (highest signal wins) and explain each label; with --report, "
        "label every file of a repository and write a self-contained HTML map.",
        epilog="Exit codes: 0 ok, 2 usage error or invalid policy, 3 cannot read the "
        "repository or write the report.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="files to classify")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--policy", metavar="FILE", help="use this policy TOML instead of the one in force"
    )
    p.add_argument(
        "--report",
        metavar="REPO",
        action="append",
        help="classify every file of this repository (repeat for an organisation rollup)",
    )
    p.add_argument("--manifest", metavar="FILE", help="repositories to report on, one path a line")
    p.add_argument("--html", metavar="FILE", help="with --report: write the HTML map here")
    p.set_defaults(func=run)


def _policy(args: argparse.Namespace) -> Any:
    from onbox.classification.policy import builtin_policy, load_policy

    if args.policy:
        return load_policy(Path(args.policy))
    try:
        from onbox.classification.policy_store import PolicyStore

        return PolicyStore().current()
    except Exception as exc:  # the store is optional for this command
        logger.warning("no signed policy available (%s); using the built-in policy", exc)
        return builtin_policy()


def run(args: argparse.Namespace) -> int:
    """Classify the paths or build the report; see the module docstring for exit codes."""
    from onbox.classification.policy import PolicyError

    if args.manifest:
        try:
            args.report = (args.report or []) + _manifest(Path(args.manifest))
        except OSError as exc:
            print(f"onbox classify: cannot read {args.manifest}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if not args.report:
            print(f"onbox classify: {args.manifest} lists no repository", file=sys.stderr)
            return EXIT_USAGE
    if bool(args.paths) == bool(args.report):
        print("onbox classify: give either PATH... or --report REPO", file=sys.stderr)
        return EXIT_USAGE
    if args.html and not args.report:
        print("onbox classify: --html needs --report REPO", file=sys.stderr)
        return EXIT_USAGE
    try:
        policy = _policy(args)
    except PolicyError as exc:
        print(f"onbox classify: invalid policy: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.report and (len(args.report) > 1 or args.manifest):
        return _rollup(args, policy)
    if args.report:
        args.report = args.report[0]
        return _report(args, policy)
    return _paths(args, policy)


def _manifest(path: Path) -> list[str]:
    """Repository paths listed in ``path`` (relative ones from its directory)."""
    repos = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            repos.append(str(path.parent / entry) if not Path(entry).is_absolute() else entry)
    return repos


def _rollup(args: argparse.Namespace, policy: Any) -> int:
    """Report on several repositories and roll them up."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from onbox.classification.report import build_report, rollup
    from onbox.classification.report_html import render_rollup_html

    missing = [r for r in args.report if not Path(r).is_dir()]
    if missing:
        print(f"onbox classify: not a directory: {', '.join(missing)}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    reports = []
    for index, repo in enumerate(args.report, start=1):
        with _bar(escape(f"[{index}/{len(args.report)}] {repo}")) as progress:
            reports.append(build_report(Path(repo), policy, progress))
    summary = rollup(reports)
    if args.html:
        try:
            Path(args.html).write_text(render_rollup_html(reports), encoding="utf-8")
        except OSError as exc:
            print(f"onbox classify: cannot write {args.html}: {exc}", file=sys.stderr)
            return EXIT_ENVIRONMENT
    if args.json:
        print(json.dumps({"repos": [r.to_json() for r in reports], "rollup": summary}, indent=2))
        return EXIT_OK
    out = Console()
    table = Table(
        title=f"{summary['repos']} repositories, {summary['files']} files"
        f" (policy {escape(policy.id)})",
        title_justify="left",
    )
    table.add_column("repository")
    table.add_column("files", justify="right")
    for name in summary["labels"]:
        table.add_column(name, justify="right")
    table.add_column("review", justify="right")
    for row in summary["by_repo"]:
        counts = [str(row["by_label"].get(n, 0)) for n in summary["labels"]]
        table.add_row(
            escape(str(row["repo"])), str(row["files"]), *counts, str(row["review_candidates"])
        )
    totals = [str(summary["by_label"][n]) for n in summary["labels"]]
    table.add_row(
        "[bold]all[/bold]", str(summary["files"]), *totals, str(summary["review_candidates"])
    )
    out.print(table)
    if args.html:
        out.print(f"rollup written to {escape(str(args.html))}")
    return EXIT_OK


def _bar(what: str) -> Any:
    """A transient progress bar on stderr; yields the ``progress(done, total)`` callback."""
    import contextlib

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    @contextlib.contextmanager
    def bar() -> Any:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as shown:
            task = shown.add_task(what, total=None)

            def progress(done: int, total: int) -> None:
                if done == 1 or done % 50 == 0 or done == total:
                    shown.update(task, completed=done, total=total)

            yield progress

    return bar()


def _paths(args: argparse.Namespace, policy: Any) -> int:
    from onbox.classification.classifier import Classifier

    classifier = Classifier(policy)
    results = [(p, classifier.classify_path(Path(p))) for p in args.paths]
    if args.json:
        out = [{"file": p, **d.to_json()} for p, d in results]
        print(json.dumps(out[0] if len(out) == 1 else out, indent=2))
        return EXIT_OK
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    for path, decision in results:
        # File names, patterns and messages are data: "[bold]x.py" is a file name here.
        table = Table(
            title=f"{escape(path)}: [bold]{decision.label.name}[/bold]"
            f"  (policy {escape(decision.policy_id)})",
            title_justify="left",
        )
        table.add_column("signal")
        table.add_column("label")
        table.add_column("why", overflow="fold")
        table.add_column("source", overflow="fold")
        for reason in decision.reasons:
            mark = "*" if reason.label == decision.label else " "
            table.add_row(
                f"{mark}{reason.signal}",
                reason.label.name,
                escape(reason.message),
                escape(reason.source or ""),
            )
        console.print(table)
    return EXIT_OK


def _report(args: argparse.Namespace, policy: Any) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from onbox.classification.report import build_report
    from onbox.classification.report_html import render_html

    root = Path(args.report)
    if not root.is_dir():
        print(f"onbox classify: {root} is not a directory", file=sys.stderr)
        return EXIT_ENVIRONMENT
    console = Console(stderr=True)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("classifying", total=None)

        def progress(done: int, total: int) -> None:
            if done == 1 or done % 50 == 0 or done == total:
                bar.update(task, completed=done, total=total)

        report = build_report(root, policy, progress)
    if args.html:
        try:
            Path(args.html).write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            print(f"onbox classify: cannot write {args.html}: {exc}", file=sys.stderr)
            return EXIT_ENVIRONMENT
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return EXIT_OK
    from rich.table import Table

    out = Console()
    table = Table(
        title=f"{escape(str(report.repo or report.root))}: {len(report.files)} files in "
        f"{report.seconds:.1f} s (policy {escape(report.policy_id)})",
        title_justify="left",
    )
    table.add_column("label")
    table.add_column("files", justify="right")
    for name, count in report.by_label.items():
        table.add_row(name, str(count))
    out.print(table)
    candidates = report.review_candidates
    out.print(f"{len(candidates)} review candidates (content above structural label)")
    for entry in candidates[:20]:
        findings = ", ".join(entry.findings) or "marker"
        out.print(f"  {entry.label:<12} {escape(str(entry.path))}  ({escape(findings)})")
    allowed = report.suppressed
    if allowed:  # accepted findings are listed, never silently dropped
        total = sum(sum(entry.suppressed.values()) for entry in allowed)
        out.print(f"{total} findings in {len(allowed)} files suppressed by the policy's allowlist")
        for entry in allowed[:20]:
            what = ", ".join(f"{k} ×{v}" for k, v in entry.suppressed.items())
            out.print(f"  {entry.label:<12} {escape(str(entry.path))}  ({escape(what)})")
    if args.html:
        out.print(f"map written to {escape(str(args.html))}")
    return EXIT_OK
