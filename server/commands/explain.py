"""``onbox explain PATH``: a file's label, every reason, and where its completions would go."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from onbox.server.cli import EXIT_OK, EXIT_USAGE


def register(sub: Any) -> None:
    """Add the ``explain`` subcommand."""
    p: argparse.ArgumentParser = sub.add_parser(
        "explain",
        help="why a file has its label, and which destination its completions go to",
        epilog="Exit codes: 0 ok, 2 a path does not exist.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--policy", help="a policy TOML file (ignored where a trust root is installed)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Explain each path with the policy in force."""
    from onbox.server.messages import to_json
    from onbox.server.settings import Settings
    from onbox.server.wiring import Wiring

    settings = Settings()
    if args.policy:
        settings.policy.path = args.policy
    wiring = Wiring(settings, open_journal=False)
    results = []
    status = EXIT_OK
    for raw in args.paths:
        path = Path(raw).resolve()
        if not path.exists():
            print(f"onbox explain: {raw}: no such file", file=sys.stderr)
            status = EXIT_USAGE
            continue
        decision = wiring.classifier.classify_path(path)
        results.append(wiring.explain(path.as_uri(), decision))
    if args.json:
        print(json.dumps([to_json(item) for item in results], indent=2))
    else:
        for item in results:
            print(f"{item.uri}\n{item.text}\n")
    return status
