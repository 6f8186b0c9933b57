"""``onbox serve``: run the language server over stdio (or TCP for debugging)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add the ``serve`` subcommand."""
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="run the language server (stdio; started by the editor)"
    )
    p.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (the default)")
    p.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead, for debugging")
    p.add_argument("--log-file", help="write logs to this file instead of stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until the client exits."""
    from onbox.server.lsp import server

    try:
        if args.tcp:
            host, _, port = args.tcp.rpartition(":")
            server.start_tcp(host or "127.0.0.1", int(port))
        else:
            server.start_io()
    finally:
        # The client may exit without a shutdown request: still flush and close the journal.
        if server.wiring is not None:
            server.wiring.stop()
    return 0
