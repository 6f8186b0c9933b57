"""``onbox journal stats --cost``: spend per destination, label, repo and day, and break-even.

The arithmetic is :mod:`onbox.audit.cost`; this module only finds the prices (the policy
in force, or ``--policy FILE``), runs it and prints a table or ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

EXIT_OK, EXIT_USAGE = 0, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--cost`` options of ``onbox journal stats``."""
    parser.add_argument(
        "--cost",
        action="store_true",
        help="spend per destination, label, repo and day from the policy's prices "
        "(docs/cost.md), with a break-even line per label",
    )
    parser.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="with --cost: take prices from this policy TOML (default: the policy in force)",
    )


def _policy(path: Path | None) -> object:
    if path is not None:
        from onbox.classification.policy import load_policy

        return load_policy(path)
    from onbox.server.settings import Settings
    from onbox.server.wiring import Wiring

    return Wiring(Settings(), open_journal=False).policy


def run_cost(args: argparse.Namespace, directory: Path, since: datetime | None) -> int:
    """Print the cost report of the journal (or bundle) at ``directory``."""
    from onbox.audit.cost import CostError, cost_report, render_rows, tally_journal
    from onbox.classification.policy_model import Policy, PolicyError

    try:
        policy = _policy(args.policy)
    except (PolicyError, OSError) as exc:
        print(f"onbox journal stats: cannot read the policy: {exc}", file=sys.stderr)
        return EXIT_USAGE
    assert isinstance(policy, Policy)
    prices = {n: d.cost for n, d in policy.destinations.items() if d.cost is not None}
    from onbox.server.commands.journal import _progress  # the journal commands' own bar

    days = getattr(args, "days", None)
    try:
        with _progress("adding up costs", quiet=args.json) as update:
            tally = tally_journal(directory, since=since, progress=update)
        report = cost_report(tally, prices, days=days)
    except CostError as exc:
        print(f"onbox journal stats: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
        return EXIT_OK
    console = Console(highlight=False)
    total = render_rows({"total": report.total}, report.currency)[0]
    console.print(
        f"{total[1]} completions over {report.days} day(s): {total[2]} tokens in, "
        f"{total[3]} out, {total[4]}  (prices: policy {escape(policy.id)} serial {policy.serial})"
    )
    for title, rows in (
        ("destination", report.by_destination),
        ("label", report.by_label),
        ("repo", report.by_repo),
        ("day", report.by_day),
    ):
        table = Table(title, "completions", "tokens in", "tokens out", "spend")
        for row in render_rows(rows, report.currency):
            table.add_row(*(escape(cell) for cell in row))  # names and repos are data
        console.print(table)
    if report.unpriced:
        console.print(
            f"no price for {escape(', '.join(report.unpriced))}: add "
            f"{escape('[destinations.NAME.cost]')} to the policy"
        )
    for line in report.break_even:
        console.print(f"break-even: {escape(line.text(report.currency))}")
    if not report.break_even:
        console.print(
            "break-even: give a self-hosted or on-box destination hardware costs "
            "(hardware_cost, power_watts, …) to compare it with the cloud"
        )
    return EXIT_OK
