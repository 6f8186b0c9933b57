"""``onbox serve``: run the language server over stdio (or TCP for debugging)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, BinaryIO


def register(sub: Any) -> None:
    """Add the ``serve`` subcommand."""
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="run the language server (stdio; started by the editor)"
    )
    p.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (the default)")
    p.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead, for debugging")
    p.add_argument("--log-file", help="write logs to this file instead of stderr")
    p.set_defaults(func=run)


def private_stdout() -> BinaryIO:
    """The LSP channel on a private duplicate of fd 1; fd 1 itself then points at stderr.

    llama-cpp-python (``verbose=False``) dup2s /dev/null over fd 1 while it loads a
    model, and native code may print to fd 1: either would swallow or corrupt the LSP
    messages the event loop writes meanwhile (a policy reload's statuses and a
    ``onbox/policyPull`` answer were lost this way). Nothing else knows the duplicate.
    """
    sys.stdout.flush()
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return channel


def run(args: argparse.Namespace) -> int:
    """Serve until the client exits."""
    from onbox.server.lsp import server

    try:
        if args.tcp:
            host, _, port = args.tcp.rpartition(":")
            server.start_tcp(host or "127.0.0.1", int(port))
        else:
            server.start_io(sys.stdin.buffer, private_stdout())
    finally:
        # The client may exit without a shutdown request: still flush and close the journal.
        if server.wiring is not None:
            server.wiring.stop()
    return 0
