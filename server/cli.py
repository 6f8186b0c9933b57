"""The ``onbox`` command line.

Each subcommand lives in its own module under :mod:`onbox.server.commands` and exposes::

    def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None

which adds its parser and sets ``func=`` to a callable ``(args) -> int`` (the exit code).
Modules are discovered, so adding a command never touches this file.

Exit codes shared by every command: 0 success, 1 the check failed (e.g. verify found
tampering), 2 usage or input error, 3 environment error (missing model, unwritable dir).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path

from onbox import __version__
from onbox.server import commands

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3

#: The server's log lines (stderr lands in the editor's output channel, or a log file).
SERVER_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every discovered subcommand."""
    parser = argparse.ArgumentParser(
        prog="onbox",
        description="Onbox: sensitivity-aware AI code completion that keeps sensitive code on the machine.",
        epilog="Exit codes: 0 ok, 1 check failed, 2 usage/input error, 3 environment error.",
    )
    parser.add_argument("--version", action="version", version=f"onbox {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


class ConciseFormatter(logging.Formatter):
    """One line per record for people at a terminal: ``onbox: warning: message``.

    The logger name, the time and (below ``-vv``) the traceback are for the server's log,
    not for someone reading a command's output.
    """

    def __init__(self, tracebacks: bool = False) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        """``onbox: LEVEL: message`` (plus the traceback when asked for)."""
        text = f"onbox: {record.levelname.lower()}: {record.getMessage()}"
        if self.tracebacks and record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(verbosity: int, log_file: str | None = None, *, server: bool = True) -> None:
    """Send logs to stderr (or a file); stdout may be the LSP channel.

    The server (``server=True``) logs full lines, for the editor's output channel; other
    commands log one concise line per warning to stderr, apart from their own output.
    """
    level = logging.WARNING - 10 * min(verbosity, 2)
    handler: logging.Handler = (
        logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    )
    if server or log_file:
        handler.setFormatter(logging.Formatter(SERVER_LOG_FORMAT))
    else:
        handler.setFormatter(ConciseFormatter(tracebacks=verbosity >= 2))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def add_log_file(path: str) -> str | None:
    """Also append the log to ``path`` (``onbox.logFile``); a message if it cannot be opened."""
    target = Path(path).expanduser()
    root = logging.getLogger()
    if any(
        isinstance(h, logging.FileHandler) and Path(h.baseFilename) == target.absolute()
        for h in root.handlers
    ):
        return None
    try:
        handler = logging.FileHandler(target, encoding="utf-8")
    except OSError as exc:
        return f"cannot write the log file {target}: {exc.strerror or exc}"
    handler.setFormatter(logging.Formatter(SERVER_LOG_FORMAT))
    root.addHandler(handler)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``onbox`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    configure_logging(args.verbose, getattr(args, "log_file", None), server=args.command == "serve")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
