"""``onbox complete FILE:LINE:COL``: the completion pipeline, one shot, from the terminal."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from onbox.server.cli import EXIT_ENVIRONMENT, EXIT_OK, EXIT_USAGE

_LANGUAGES = {
    ".py": "python",
    ".js": "javascript",
    ".jsx": "javascriptreact",
    ".ts": "typescript",
    ".tsx": "typescriptreact",
    ".go": "go",
    ".java": "java",
    ".rs": "rust",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".lua": "lua",
    ".rb": "ruby",
}


def register(sub: Any) -> None:
    """Add the ``complete`` subcommand."""
    p: argparse.ArgumentParser = sub.add_parser(
        "complete",
        help="complete FILE at LINE:COL (1-based) and print the suggestion",
        description="Run the same pipeline as the editor once: label, route, generate, post-process.",
        epilog="Exit codes: 0 ok (even with no suggestion), 2 bad FILE:LINE:COL, 3 model unavailable.",
    )
    p.add_argument(
        "target", metavar="FILE:LINE:COL", help="1-based line and column; COL may be 'end'"
    )
    p.add_argument(
        "--json", action="store_true", help="print label, destination, model and timings as JSON"
    )
    p.add_argument("--model", help="a GGUF file to use instead of the embedded default")
    p.add_argument("--max-tokens", type=int, default=None, help="generation limit (default 64)")
    p.add_argument("--policy", help="a policy TOML file to classify with")
    p.set_defaults(func=run)


def parse_target(target: str) -> tuple[Path, int, int | None]:
    """Split ``FILE:LINE:COL`` (COL may be ``end``)."""
    match = re.fullmatch(r"(.+):(\d+):(\d+|end)", target)
    if not match:
        raise ValueError(f"expected FILE:LINE:COL (1-based), got {target!r}")
    col = None if match.group(3) == "end" else int(match.group(3))
    return Path(match.group(1)), int(match.group(2)), col


def run(args: argparse.Namespace) -> int:
    """Complete once and print the result."""
    from onbox.classification.languages import language_for
    from onbox.inference.destination import CancelToken, DestinationKind
    from onbox.server.pipeline import DocumentInput
    from onbox.server.positions import position_to_offset
    from onbox.server.settings import Settings
    from onbox.server.wiring import Wiring

    try:
        path, line, col = parse_target(args.target)
        text = path.read_bytes().decode("utf-8", "replace")
    except (ValueError, OSError) as exc:
        print(f"onbox complete: {exc}", file=sys.stderr)
        return EXIT_USAGE
    settings = Settings()
    if args.model:
        settings.model.path = args.model
    if args.max_tokens:
        settings.completion.max_tokens = args.max_tokens
    if args.policy:
        settings.policy.path = args.policy
    wiring = Wiring(settings)
    lines = text.splitlines(keepends=True)
    if col is None:
        idx = min(max(line - 1, 0), max(len(lines) - 1, 0))
        col = len(lines[idx].rstrip("\r\n")) + 1 if lines else 1
    offset = position_to_offset(text, line - 1, col - 1, "utf-32")
    # An extensionless script is known by its shebang, as an editor would know it.
    language = _LANGUAGES.get(path.suffix.lower()) or language_for(str(path), None, text)
    doc = DocumentInput(path.resolve().as_uri(), text, offset, language)
    try:
        wiring.service.local.load()
    except Exception as exc:
        decision = wiring.service.classify(doc.uri, doc.text, None, doc.language)
        if wiring.destination_for(decision).kind == DestinationKind.LLAMA_CPP:
            print(f"onbox complete: {exc}", file=sys.stderr)
            wiring.stop()
            return EXIT_ENVIRONMENT
        # The file may leave the machine; the route decides (and the gate decides again).
        print(f"onbox complete: {exc}; not needed for this file", file=sys.stderr)
    try:
        result = wiring.service.complete(doc, CancelToken())
    finally:
        wiring.stop()
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return EXIT_OK
    header = f"{path}:{line}:{col}  label: {result.label}  →  destination: {result.destination} ({result.model})"
    print(header)
    for reason in result.reasons:
        print(f"  why: {reason}")
    print("-" * min(len(header), 80))
    print(result.text if result.text else f"(no suggestion: {result.error or result.outcome})")
    return EXIT_OK
