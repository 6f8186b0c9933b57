"""``onbox keys show|rotate|new-recipient``: the device signing key and security-team keys."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from onbox.audit import JournalError, generate_recipient_key, open_journal
from onbox.server.journal_location import journal_dir_in_force

EXIT_OK, EXIT_USAGE, EXIT_ENVIRONMENT = 0, 2, 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``onbox keys`` and its subcommands."""
    parser = subparsers.add_parser("keys", help="device signing key: show for enrolment, rotate")
    sub = parser.add_subparsers(dest="keys_command", metavar="SUBCOMMAND", required=True)
    show = sub.add_parser(
        "show",
        help="print the device key fingerprint and public key (creates it on first use)",
        epilog="exit codes: 0 ok, 3 key or journal unusable",
    )
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=run_show)
    rotate = sub.add_parser(
        "rotate",
        help="replace the signing key; the journal records it signed by both keys",
        epilog="exit codes: 0 ok, 3 key or journal unusable",
    )
    rotate.add_argument("--reason", default="manual", help="recorded in the key-rotated entry")
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(func=run_rotate)
    recipient = sub.add_parser(
        "new-recipient",
        help="security team: make an X25519 key pair for encrypted prompts",
        epilog="exit codes: 0 ok, 2 the file exists",
    )
    recipient.add_argument(
        "--out", type=Path, required=True, help="private key file to write (mode 0600)"
    )
    recipient.set_defaults(func=run_new_recipient)


def _describe(journal_key: str, device: str, public: str, journal_dir: Path) -> dict[str, str]:
    return {
        "device_fingerprint": device,
        "current_key": journal_key,
        "public_key": public,
        "journal": str(journal_dir),
    }


def run_show(args: argparse.Namespace) -> int:
    """``onbox keys show``."""
    try:
        with open_journal(journal_dir_in_force()) as journal:
            info = _describe(
                journal.key_fingerprint,
                journal.device_fingerprint,
                journal.public_key_b64,
                journal.path,
            )
    except (JournalError, ValueError) as exc:
        Console(stderr=True).print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return EXIT_ENVIRONMENT
    if args.json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
    else:
        console = Console(highlight=False)
        console.print(f"device fingerprint (enrol this): {info['device_fingerprint']}")
        console.print(f"current signing key:             {info['current_key']}")
        console.print(f"current public key (Ed25519):    {info['public_key']}")
    return EXIT_OK


def run_rotate(args: argparse.Namespace) -> int:
    """``onbox keys rotate``."""
    try:
        with open_journal(journal_dir_in_force()) as journal:
            old = journal.key_fingerprint
            receipt = journal.rotate_key(args.reason)
            info = _describe(
                journal.key_fingerprint,
                journal.device_fingerprint,
                journal.public_key_b64,
                journal.path,
            )
    except (JournalError, ValueError) as exc:
        Console(stderr=True).print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return EXIT_ENVIRONMENT
    if args.json:
        sys.stdout.write(
            json.dumps({**info, "previous_key": old, "seq": receipt.seq}, indent=2) + "\n"
        )
    else:
        Console(highlight=False).print(
            f"rotated {old} → {info['current_key']} (journal seq {receipt.seq})"
        )
    return EXIT_OK


def run_new_recipient(args: argparse.Namespace) -> int:
    """``onbox keys new-recipient``."""
    private, public = generate_recipient_key()
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        Console(stderr=True).print(
            f"[red]error:[/red] {escape(str(args.out))} exists; choose another path"
        )
        return EXIT_USAGE
    with os.fdopen(fd, "w") as handle:
        handle.write(private + "\n")
    Console(highlight=False).print(
        f"private key written to {escape(str(args.out))} (keep it offline: it decrypts every"
        " sealed prompt)\npublic key, for the policy's "
        + escape(f'[policy] security_team_key = "{public}"'),
        soft_wrap=True,  # one line, to copy as it is
    )
    return EXIT_OK
