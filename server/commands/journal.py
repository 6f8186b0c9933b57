"""``onbox journal verify|export|show|stats|decrypt``: the security team's view of the journal."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from onbox import paths
from onbox.audit import (
    KINDS,
    EnvelopeError,
    JournalError,
    VerifyResult,
    decrypt_prompt,
    default_key_dir,
    export_bundle,
    iter_entries,
    journal_stats,
    load_checkpoint,
    open_journal,
    verify_journal,
)
from onbox.audit.keys import KeyStore
from onbox.audit.series import describe as describe_series
from onbox.audit.series import verify_series
from onbox.audit.stats import EntryFilter, journal_device
from onbox.server.commands import _journal_cost as journal_cost
from onbox.server.journal_location import journal_dir_in_force

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT = 0, 1, 2, 3
PROGRESS_MIN_BYTES = 2 * 1024 * 1024

VERIFY_EPILOG = """\
Several bundles (PATH PATH …) are verified as one series from one device: each alone,
then stitched by seq; gaps between them are listed with the export that fills them.

exit codes:
  0  every signature, hash, chain link, seq and segment link verifies
     (and the checkpoint / enrolled key match, when given)
  1  verification failed: the first bad entry is named (segment, line, seq, what),
     or a gap leaves continuity unproven (the missing seq range is named)
  2  usage or input error (no journal at PATH, unreadable checkpoint)
  3  environment error
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``onbox journal`` and its subcommands."""
    parser = subparsers.add_parser(
        "journal",
        help="verify, export and summarise the audit journal",
        description="Verify, export and summarise the signed audit journal.",
    )
    sub = parser.add_subparsers(dest="journal_command", metavar="SUBCOMMAND", required=True)

    verify = sub.add_parser(
        "verify",
        help="check every signature and chain link",
        epilog=VERIFY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument(
        "path",
        nargs="*",
        type=Path,
        help="journal directory or export bundle(s) (default: this device's journal)",
    )
    verify.add_argument("--key", metavar="FINGERPRINT", help="the enrolled device key fingerprint")
    verify.add_argument(
        "--checkpoint",
        type=Path,
        help="a checkpoint.json or an earlier export bundle: the journal must still contain its head",
    )
    verify.add_argument(
        "--workers", type=int, default=None, help="verifier processes (default: CPU count)"
    )
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    verify.add_argument("--json", action="store_true", help="machine-readable result")
    verify.set_defaults(func=_this_journal(run_verify, given_paths=True))

    export = sub.add_parser(
        "export",
        help="write one verifiable bundle file",
        epilog="exit codes: 0 ok, 2 usage error, 3 environment error",
    )
    export.add_argument("--dir", type=Path, help="journal directory (default: this device's)")
    export.add_argument("--since", type=_when, help="ISO date/time (UTC when no offset)")
    export.add_argument("--until", type=_when, help="ISO date/time (UTC when no offset)")
    export.add_argument("--out", type=Path, required=True, help="bundle file to write (.tar)")
    export.set_defaults(func=_this_journal(run_export))

    show = sub.add_parser(
        "show", help="list recent entries", epilog="exit codes: 0 ok, 2 usage error"
    )
    show.add_argument("--dir", type=Path, help="journal directory or export bundle")
    show.add_argument("--kind", action="append", help="only these kinds (repeatable)")
    show.add_argument("--since", type=_when)
    show.add_argument("--until", type=_when)
    show.add_argument("--repo", action="append", help="only entries about this repo (repeatable)")
    show.add_argument("--path", action="append", help="file path or glob (repeatable)")
    show.add_argument("--label", action="append", help="only this label (repeatable)")
    show.add_argument(
        "--destination", action="append", help="only this destination name (repeatable)"
    )
    show.add_argument(
        "--user", action="append", help="only this OS user or git email (the actor; repeatable)"
    )
    show.add_argument("--limit", type=int, default=20, help="newest N entries (0: all)")
    show.add_argument("--json", action="store_true", help="JSON Lines output")
    show.set_defaults(func=_this_journal(run_show))

    stats = sub.add_parser(
        "stats",
        help="egress by destination/label/day, on-box share, acceptance",
        epilog="exit codes: 0 ok, 1 the journal does not verify, 2 usage error",
    )
    stats.add_argument("--dir", type=Path, help="journal directory or export bundle")
    stats.add_argument("--since", type=_when)
    stats.add_argument("--days", type=int, help="only the last N days")
    stats.add_argument(
        "--no-verify", action="store_true", help="count without verifying signatures first"
    )
    stats.add_argument("--json", action="store_true")
    journal_cost.add_arguments(stats)
    stats.set_defaults(func=_this_journal(run_stats))

    ship = sub.add_parser(
        "ship",
        help="upload entries since the last acknowledged one to the collector",
        epilog="exit codes: 0 shipped (or nothing new: heartbeat sent), 1 the collector "
        "refused an upload, 2 usage error, 3 collector unreachable (entries stay queued)",
    )
    ship.add_argument("--now", action="store_true", help="ship once, now (for scripts)")
    ship.add_argument("--collector", required=True, metavar="URL", help="collector base URL")
    ship.add_argument("--dir", type=Path, help="journal directory (default: this device's)")
    ship.add_argument("--ca-bundle", type=Path, help="PEM CA bundle for the collector's TLS")
    ship.add_argument("--batch", type=int, default=2000, help="entries per upload")
    ship.add_argument("--json", action="store_true")
    ship.set_defaults(func=_this_journal(run_ship))

    decrypt = sub.add_parser(
        "decrypt",
        help="security team: read an encrypted egress prompt",
        epilog="exit codes: 0 ok, 1 cannot decrypt, 2 usage error",
    )
    decrypt.add_argument("seq", type=int, help="seq of the egress entry")
    decrypt.add_argument(
        "--private-key",
        type=Path,
        required=True,
        help="file holding the raw base64 X25519 private key",
    )
    decrypt.add_argument("--dir", type=Path)
    decrypt.set_defaults(func=_this_journal(run_decrypt))


def _when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _err(message: str) -> None:
    Console(stderr=True).print(f"[red]error:[/red] {escape(message)}", highlight=False)


@contextlib.contextmanager
def _progress(description: str, quiet: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A transient progress bar on stderr while a journal is read.

    Yields ``update(done, total)`` for work that reports how far it is (verification);
    without it the bar shows activity and the time taken. Nothing is shown when
    ``quiet`` (``--json``) or when stderr is not a terminal.
    """
    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        yield lambda done, total: None
        return
    columns = (
        SpinnerColumn(),
        "[progress.description]{task.description}",
        BarColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _this_journal(
    run: Callable[[argparse.Namespace], int], *, given_paths: bool = False
) -> Callable[[argparse.Namespace], int]:
    """Default ``--dir`` to this workstation's journal: the signed policy's place if managed.

    ``given_paths``: the command takes journals or bundles as positional ``path``s (verify),
    and needs no default when some are given. (``show --path`` is a filter, not a journal.)
    """

    @functools.wraps(run)
    def with_dir(args: argparse.Namespace) -> int:
        named = given_paths and getattr(args, "path", None)
        if getattr(args, "dir", None) is None and not named:
            try:
                args.dir = journal_dir_in_force()
            except ValueError as exc:
                _err(str(exc))
                return EXIT_ENVIRONMENT
        return run(args)

    return with_dir


def run_verify(args: argparse.Namespace) -> int:
    """``onbox journal verify``."""
    given: list[Path] = args.path or [args.dir]
    for path in given:
        if not path.exists():
            _err(f"no journal at {path}; pass a journal directory or an export bundle")
            return EXIT_USAGE
    if len(given) > 1 and not all(p.is_file() for p in given):
        _err("several paths must all be export bundles (one device's series)")
        return EXIT_USAGE
    path = given[0]
    checkpoint = None
    if args.checkpoint is not None:
        try:
            checkpoint = load_checkpoint(args.checkpoint)
        except (OSError, ValueError, KeyError) as exc:
            _err(f"cannot read checkpoint {args.checkpoint}: {exc}")
            return EXIT_USAGE
    if len(given) > 1:
        return _run_verify_series(given, args, checkpoint)
    try:
        result = _verify_with_progress(path, args, checkpoint)
    except ValueError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except OSError as exc:
        _err(f"cannot read {path}: {exc}")
        return EXIT_ENVIRONMENT
    if args.json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    else:
        _print_verify(result)
    return EXIT_OK if result.ok else EXIT_FAILED


def _run_verify_series(
    bundles: list[Path], args: argparse.Namespace, checkpoint: dict[str, Any] | None
) -> int:
    try:
        series = verify_series(
            bundles, expected_fingerprint=args.key, checkpoint=checkpoint, workers=args.workers
        )
    except ValueError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except OSError as exc:
        _err(f"cannot read a bundle: {exc}")
        return EXIT_ENVIRONMENT
    if args.json:
        sys.stdout.write(json.dumps(series.to_json(), indent=2) + "\n")
    else:
        console = Console(highlight=False)
        for line in describe_series(series):
            console.print(escape(line))
        if series.ok:
            heads = [r.head_seq for _, r in series.bundles]
            console.print(
                f"[green]OK[/green] {len(bundles)} bundles from device {series.device} form one "
                f"history up to seq {max(heads)}; no gaps"
            )
        elif not series.problems:
            console.print(f"[red]INCOMPLETE[/red] {len(series.gaps)} gap(s); nothing was altered")
    return EXIT_OK if series.ok else EXIT_FAILED


def _verify_with_progress(
    path: Path, args: argparse.Namespace, checkpoint: dict[str, Any] | None
) -> VerifyResult:
    size = (
        sum(p.stat().st_size for p in path.glob("segment-*.jsonl"))
        if path.is_dir()
        else path.stat().st_size
    )
    if args.no_progress or args.json or size < PROGRESS_MIN_BYTES:
        return verify_journal(
            path, expected_fingerprint=args.key, checkpoint=checkpoint, workers=args.workers
        )
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("verifying", total=size)
        return verify_journal(
            path,
            expected_fingerprint=args.key,
            checkpoint=checkpoint,
            workers=args.workers,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )


def _print_verify(result: VerifyResult) -> None:
    console = Console(highlight=False)
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {escape(str(note))}")
    if result.ok:
        console.print(
            f"[green]OK[/green] {result.entries} entries in {result.segments} segments; "
            f"head seq {result.head_seq} ({result.head_hash[:16]}…); device {result.device_fingerprint}; "
            f"keys {' → '.join(result.keys)}"
            + (f"; {result.checkpoint_note}" if result.checkpoint_note else "; no checkpoint given")
        )
    else:
        console.print(f"[red]FAILED[/red] {escape(str(result.first_error))}")
        console.print(f"{result.entries} entries verified before it.")


def run_export(args: argparse.Namespace) -> int:
    """``onbox journal export``."""
    directory: Path = args.dir
    foreign = _foreign_journal(directory)
    if foreign is not None:
        _err(foreign)
        return EXIT_USAGE
    try:
        with open_journal(args.dir) as journal, _progress(f"exporting to {args.out}"):
            manifest = export_bundle(journal, args.out, since=args.since, until=args.until)
    except ValueError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except (JournalError, OSError) as exc:
        _err(str(exc))
        return EXIT_ENVIRONMENT
    names = [s["name"] for s in manifest["segments"]]
    Console(highlight=False).print(
        f"wrote {escape(str(args.out))}: {len(names)} segments ({names[0]} … {names[-1]}), device {manifest['device']}"
    )
    return EXIT_OK


def _foreign_journal(directory: Path) -> str | None:
    """Why ``directory`` cannot be exported here (another device's journal), or None.

    Exporting signs the bundle with the device key, so it must run on the device that
    wrote the journal. Checked before opening, which would otherwise create a key here.
    """
    device = journal_device(directory)
    if device is None:
        return None
    state = KeyStore(default_key_dir()).state()
    if state is not None and state["device"] == device:
        return None
    here = (
        f"this machine's device key is {state['device']}"
        if state
        else "this machine has no device key"
    )
    return (
        f"the journal at {directory} belongs to device {device} and {here}. A bundle is signed "
        "by the device that wrote the journal, so run `onbox journal export` on that device. "
        f"To check a copied journal here, run `onbox journal verify {directory} --key {device}`."
    )


def _since(args: argparse.Namespace) -> datetime | None:
    if getattr(args, "days", None):
        return datetime.now(UTC) - timedelta(days=args.days)
    since: datetime | None = args.since
    return since


def run_show(args: argparse.Namespace) -> int:
    """``onbox journal show``."""
    directory = args.dir
    if not directory.exists():
        _err(f"no journal or bundle at {directory}")
        return EXIT_USAGE
    unknown = sorted(set(args.kind or ()) - KINDS)
    if unknown:
        _err(f"unknown kind(s) {', '.join(unknown)}; valid kinds: {', '.join(sorted(KINDS))}")
        return EXIT_USAGE
    query = EntryFilter(
        kinds=frozenset(args.kind or ()),
        since=args.since,
        until=args.until,
        repos=frozenset(args.repo or ()),
        paths=tuple(args.path or ()),
        labels=frozenset(args.label or ()),
        destinations=frozenset(args.destination or ()),
        users=frozenset(args.user or ()),
    )
    entries = list(query.apply(iter_entries(directory, since=args.since, with_device=True)))
    if args.limit:
        entries = entries[-args.limit :]
    if args.json:
        for entry in entries:
            sys.stdout.write(json.dumps(entry, sort_keys=True) + "\n")
        return EXIT_OK
    table = Table("device", "seq", "time", "kind", "body")
    for entry in entries:
        body = json.dumps(entry.get("body"), sort_keys=True)
        table.add_row(
            str(entry.get("device"))[:8],
            str(entry.get("seq")),
            str(entry.get("time")),
            str(entry.get("kind")),
            escape(body[:100] + ("…" if len(body) > 100 else "")),
        )
    Console().print(table)
    return EXIT_OK


def run_stats(args: argparse.Namespace) -> int:
    """``onbox journal stats``."""
    directory = args.dir
    if not directory.exists():
        _err(f"no journal or bundle at {directory}")
        return EXIT_USAGE
    verified: VerifyResult | None = None
    if not args.no_verify:
        with _progress("verifying", quiet=args.json) as update:
            verified = verify_journal(directory, progress=update)
        if not verified.ok:
            _err(
                f"the journal does not verify ({verified.first_error}); its numbers cannot be "
                "trusted. Run `onbox journal verify` for details, or pass --no-verify."
            )
            return EXIT_FAILED
    if args.cost:
        return journal_cost.run_cost(args, directory, _since(args))
    with _progress("counting", quiet=args.json):
        stats = journal_stats(directory, since=_since(args))
    stats["verified"] = (
        {"ok": True, "device": verified.device_fingerprint, "head_seq": verified.head_seq}
        if verified is not None
        else None
    )
    if args.json:
        sys.stdout.write(json.dumps(stats, indent=2) + "\n")
        return EXIT_OK
    console = Console(highlight=False)
    if verified is not None:
        console.print(
            f"verified: device {verified.device_fingerprint}, head seq {verified.head_seq}"
        )
    else:
        console.print("[yellow]not verified[/yellow] (--no-verify)")
    egress, comp, acc = stats["egress"], stats["completions"], stats["acceptance"]
    console.print(
        f"entries: {stats['entries']}   completions: {comp['total']} (served on-box: {comp['served_on_box']})"
    )
    rate = f"{acc['rate']:.1%}" if acc["rate"] is not None else "n/a"
    console.print(f"acceptance: {acc['accepted']}/{acc['served']} served ({rate})")
    console.print(f"egress: {egress['total']} requests, {egress['bytes_sent']} bytes sent")
    for title in ("by_destination", "by_label", "by_day"):
        table = Table(title.replace("_", " "), "egress")
        for name, count in egress[title].items():
            table.add_row(escape(str(name)), str(count))
        console.print(table)
    return EXIT_OK


def ship_state_path() -> Path:
    """Where ``onbox journal ship`` remembers the last acknowledged seq."""
    return paths.data_dir() / "ship-state.json"


def run_ship(args: argparse.Namespace) -> int:
    """``onbox journal ship --now``."""
    import httpx

    from onbox.audit.errors import CollectorUnreachable, UploadRefused
    from onbox.audit.ship import ship

    if not args.now:
        _err("shipping on a timer runs inside `onbox serve`; pass --now to ship once")
        return EXIT_USAGE
    directory: Path = args.dir
    foreign = _foreign_journal(directory)
    if foreign is not None:
        _err(foreign.replace("onbox journal export", "onbox journal ship"))
        return EXIT_USAGE
    verify: bool | str = str(args.ca_bundle) if args.ca_bundle else True
    try:
        with open_journal(args.dir) as journal, httpx.Client(timeout=30, verify=verify) as client:
            report = ship(
                journal,
                args.collector,
                ship_state_path(),
                batch_entries=max(1, args.batch),
                client=client,
            )
    except CollectorUnreachable as exc:
        _err(str(exc))
        return EXIT_ENVIRONMENT
    except UploadRefused as exc:
        _err(str(exc))
        return EXIT_FAILED
    except (JournalError, OSError) as exc:
        _err(str(exc))
        return EXIT_ENVIRONMENT
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        Console(highlight=False).print(
            f"shipped {report.sent} entries in {report.uploads} uploads "
            f"({report.stored} stored, {report.duplicates} already there); "
            f"acknowledged up to seq {report.acked_seq}"
        )
        for alert in report.alerts or []:
            Console(stderr=True, highlight=False).print(
                f"[yellow]collector alert:[/yellow] {alert.get('kind')}: {alert.get('detail')}"
            )
    return EXIT_OK


def run_decrypt(args: argparse.Namespace) -> int:
    """``onbox journal decrypt``."""
    directory = args.dir
    try:
        private = args.private_key.read_text("ascii").strip()
    except OSError as exc:
        _err(f"cannot read {args.private_key}: {exc}")
        return EXIT_USAGE
    for entry in iter_entries(directory):
        if entry.get("seq") == args.seq:
            envelope = _find_envelope(entry.get("body") or {})
            if envelope is None:
                _err(f"entry {args.seq} ({entry.get('kind')}) holds no encrypted prompt")
                return EXIT_USAGE
            try:
                sys.stdout.write(decrypt_prompt(envelope, private))
            except EnvelopeError as exc:
                _err(str(exc))
                return EXIT_FAILED
            return EXIT_OK
    _err(f"no entry with seq {args.seq} in {directory}")
    return EXIT_USAGE


def _find_envelope(body: dict[str, Any]) -> dict[str, Any] | None:
    for value in body.values():
        if isinstance(value, dict) and str(value.get("alg", "")).startswith("X25519-"):
            return value
    return None
