"""``onbox eval PATH…``: completion quality on your own code, per destination and label."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from onbox.server.cli import EXIT_ENVIRONMENT, EXIT_OK, EXIT_USAGE

EXIT_INTERRUPTED = 130


def register(sub: Any) -> None:
    """Add the ``eval`` subcommand."""
    p: argparse.ArgumentParser = sub.add_parser(
        "eval",
        help="measure completion quality on fill-in-the-middle tasks cut from your code",
        description=(
            "Sample fill-in-the-middle tasks from the files under PATH (tree-sitter: a line "
            "start, mid-line, a block body), run each through the editor's pipeline for every "
            "destination, and report exact match, edit similarity, parses-after, accepted "
            "characters, empty answers, latency and tokens per destination and label. A "
            "destination below a file's label never receives it: the task is listed as not "
            "allowed. Ctrl-C stops the run and reports the tasks finished so far."
        ),
        epilog=(
            "Exit codes: 0 ok, 2 usage error (no tasks, unknown destination, bad --price), "
            "3 the on-box model is needed and unavailable, 130 interrupted (the partial "
            "report is still printed)."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="repositories, folders or files")
    p.add_argument(
        "--destinations",
        help="comma-separated destination names (default: every destination the policy has)",
    )
    p.add_argument("--limit", type=int, default=60, help="number of tasks (default 60)")
    p.add_argument("--seed", type=int, default=0, help="task sampling seed (default 0)")
    p.add_argument(
        "--kinds",
        default="line-start,mid-line,block",
        help="task kinds to sample (default: line-start,mid-line,block)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--html", metavar="FILE", help="also write an HTML report with charts")
    p.add_argument(
        "--include-text",
        action="store_true",
        help="put the hidden span and each answer into the --json output (it is your code)",
    )
    p.add_argument(
        "--price",
        action="append",
        default=[],
        metavar="NAME=IN,OUT",
        help="US dollars per million input and output tokens for a destination (repeatable;"
        " overrides the policy's [destinations.NAME.cost])",
    )
    p.add_argument("--policy", help="a policy TOML file to classify and route with")
    p.add_argument("--model", help="a GGUF file to use instead of the embedded default")
    p.add_argument("--max-tokens", type=int, default=None, help="generation limit (default 64)")
    p.set_defaults(func=run)


def parse_prices(values: list[str]) -> dict[str, Any]:
    """``NAME=IN,OUT`` → ``{NAME: Price}``; raise ``ValueError`` naming a bad one."""
    from onbox.server.evaluation import Price

    prices = {}
    for value in values:
        match = re.fullmatch(r"([^=]+)=([\d.]+),([\d.]+)", value)
        if not match:
            raise ValueError(f"--price expects NAME=IN,OUT (dollars per million), got {value!r}")
        prices[match.group(1)] = Price(float(match.group(2)), float(match.group(3)))
    return prices


def run(args: argparse.Namespace) -> int:
    """Sample, evaluate, report."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from onbox.inference.fim_tasks import KINDS, sample_tasks
    from onbox.server.eval_report import not_allowed_lines, render_html, results_table
    from onbox.server.evaluation import Evaluation, UnknownDestination
    from onbox.server.settings import Settings
    from onbox.server.wiring import Wiring

    err = Console(stderr=True)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    try:
        prices = parse_prices(args.price)
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            raise ValueError(f"unknown task kind {', '.join(bad)}; choose from {', '.join(KINDS)}")
        missing = [p for p in args.paths if not Path(p).exists()]
        if missing:
            raise ValueError(f"no such path: {', '.join(missing)}")
        if args.limit < 1:
            raise ValueError("--limit must be at least 1")
    except ValueError as exc:
        print(f"onbox eval: {exc}", file=sys.stderr)
        return EXIT_USAGE
    settings = Settings()
    if args.model:
        settings.model.path = args.model
    if args.max_tokens:
        settings.completion.max_tokens = args.max_tokens
    if args.policy:
        settings.policy.path = args.policy
    started = time.perf_counter()
    tasks = sample_tasks(
        [Path(p) for p in args.paths], seed=args.seed, limit=args.limit, kinds=kinds
    )
    sampling = time.perf_counter() - started
    if not tasks:
        print(
            "onbox eval: no tasks found (no parsable source files under the paths)", file=sys.stderr
        )
        return EXIT_USAGE
    wiring = Wiring(settings)
    try:
        names = (
            [n.strip() for n in args.destinations.split(",") if n.strip()]
            if args.destinations
            else list(wiring.router.destinations)
        )
        try:
            evaluation = Evaluation(wiring, names)
        except UnknownDestination as exc:
            print(f"onbox eval: {exc}", file=sys.stderr)
            return EXIT_USAGE
        try:
            wiring.local.load(lambda msg: err.print(f"[dim]{escape(msg)}[/dim]"))
        except Exception as exc:
            if wiring.router.on_box_name in names:
                print(f"onbox eval: {exc}", file=sys.stderr)
                return EXIT_ENVIRONMENT
            err.print(f"onbox eval: {exc}; fallbacks to on-box will fail", markup=False)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}"),
            console=err,
            transient=True,
        ) as progress:
            bar = progress.add_task("evaluating", total=len(tasks) * len(names), last="")
            report = evaluation.run(
                tasks,
                prices={**evaluation.policy_prices(), **prices},  # --price wins
                seed=args.seed,
                on_outcome=lambda o: progress.update(
                    bar, advance=1, last=f"{o.destination}: {o.status}"
                ),
            )
        report.sampling_seconds = sampling
        report.total_seconds += sampling
        evaluation.close()
    finally:
        wiring.stop()
    data = report.to_json(text=args.include_text)
    if args.html:
        Path(args.html).write_text(render_html(data), encoding="utf-8")
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        out = Console()
        if not out.is_terminal:  # piped: do not squeeze the table into 80 columns
            out = Console(width=200)
        out.print(results_table(data))
        refused = not_allowed_lines(data)
        for line in refused[:20]:
            out.print(line, markup=False, highlight=False)
        if len(refused) > 20:
            out.print(f"… and {len(refused) - 20} more not allowed (see --json)")
        overhead = data["timing"]["overhead"]
        if overhead is not None:
            out.print(
                f"completions {data['timing']['completionSeconds']:.1f} s; evaluator overhead "
                f"{100 * overhead:.1f}%",
                highlight=False,
            )
    return EXIT_INTERRUPTED if report.interrupted else EXIT_OK
