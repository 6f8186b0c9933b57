"""``onbox collector serve|query|enrol|alerts``: the security team's collector service."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from onbox import paths

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT = 0, 1, 2, 3

SERVE_EPILOG = """\
The database URL picks the store: sqlite:////abs/path.db (default: collector.db under
the data dir) or postgresql://user@host/dbname (or any libpq connection string).

Enrolment: devices listed with --enrol-file (one fingerprint a line, # comments) or
enrolled with `onbox collector enrol` may upload; --trust-on-first-use admits any
device and raises an unknown-device alert for it.

exit codes: 0 stopped cleanly, 2 usage error, 3 the database or extras are missing
"""

ENROL_EPILOG = """\
A reinstalled workstation starts a new journal under a new root key, and its uploads
are refused (403, an unknown-device alert) until an admin says it is the same machine:

    onbox collector enrol OLD_DEVICE --new-key NEW_FINGERPRINT --reason "disk replaced"

The new key starts a new chain epoch; everything stored under the old key stays, and
uploads signed under the old key are refused from then on (a retired-key alert). The
decision is recorded as a re-enrolled alert, forwarded to the SIEM.

exit codes: 0 ok, 1 refused (unknown or already re-enrolled device), 2 usage, 3 database
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``onbox collector`` and its subcommands."""
    parser = subparsers.add_parser(
        "collector",
        help="the security team's journal collector (service, search, enrolment)",
        description="Collect, verify and search every workstation's journal.",
    )
    sub = parser.add_subparsers(dest="collector_command", metavar="SUBCOMMAND", required=True)

    def database(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", help="database URL (default: SQLite under the data dir)")

    serve = sub.add_parser(
        "serve",
        help="run the collector (HTTP)",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    database(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8470)
    serve.add_argument("--enrol-file", type=Path, help="approved device fingerprints")
    serve.add_argument("--trust-on-first-use", action="store_true")
    serve.add_argument(
        "--silence-minutes", type=float, default=30, help="alert when a device is quiet this long"
    )
    serve.add_argument(
        "--workers", type=int, default=1, help="server processes (ingest uses one core each)"
    )
    serve.add_argument("--siem-file", type=Path, help="forward alerts and egress as JSON lines")
    serve.add_argument("--siem-syslog", metavar="HOST:PORT", help="forward over RFC 5424 TCP")
    serve.add_argument("--siem-syslog-tls", action="store_true", help="syslog over TLS")
    serve.add_argument(
        "--siem-hec", metavar="URL", help="HTTP event collector (token: $ONBOX_SIEM_HEC_TOKEN)"
    )
    serve.add_argument("--siem-ca", help="PEM CA bundle for syslog TLS / HEC")
    serve.add_argument("--tls-cert", help="PEM certificate (serve HTTPS)")
    serve.add_argument("--tls-key", help="PEM private key of the certificate")
    serve.set_defaults(func=run_serve)

    query = sub.add_parser(
        "query", help="search stored entries", epilog="exit codes: 0 ok, 2 usage, 3 database"
    )
    database(query)
    for name in ("device", "user", "repo", "path", "label", "destination", "kind"):
        query.add_argument(f"--{name}")
    query.add_argument("--since", type=_when)
    query.add_argument("--until", type=_when)
    query.add_argument("--limit", type=int, default=50)
    query.add_argument("--full", action="store_true", help="include each signed entry (--json)")
    query.add_argument("--json", action="store_true", help="JSON Lines output")
    query.set_defaults(func=run_query)

    enrol = sub.add_parser(
        "enrol",
        help="approve a device fingerprint, or a reinstalled device's new root key",
        epilog=ENROL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    database(enrol)
    enrol.add_argument("fingerprint", help="the device fingerprint (`onbox keys show`)")
    enrol.add_argument("--name", help="a note: host, owner")
    enrol.add_argument(
        "--new-key",
        metavar="FINGERPRINT",
        help="re-enrol the device under this new root key (a reinstalled workstation)",
    )
    enrol.add_argument("--reason", help="with --new-key: why, for the audit record")
    enrol.set_defaults(func=run_enrol)

    alerts = sub.add_parser(
        "alerts",
        help="open alerts and device chain status",
        epilog="exit codes: 0 no open alert, 1 open alerts, 3 database",
    )
    database(alerts)
    alerts.add_argument("--silence-minutes", type=float, default=30)
    alerts.add_argument("--json", action="store_true")
    alerts.set_defaults(func=run_alerts)


def _when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _err(message: str) -> None:
    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False)


def default_store_url() -> str:
    """SQLite under the data dir."""
    from onbox.collector.store import default_url

    url: str = default_url(paths.data_dir())
    return url


def _store(args: argparse.Namespace) -> Any:
    from onbox.collector.store import Store

    return Store(args.db or default_store_url())


def run_serve(args: argparse.Namespace) -> int:
    """``onbox collector serve``."""
    try:
        from onbox.collector.app import serve
        from onbox.collector.errors import StoreUnavailable
        from onbox.collector.ingest import Enrolment
    except ImportError as exc:
        _err(f"the collector needs its extras ({exc}): pip install 'onbox[collector]'")
        return EXIT_ENVIRONMENT
    approved: set[str] = set()
    if args.enrol_file is not None:
        try:
            for line in args.enrol_file.read_text("utf-8").splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    approved.add(line)
        except OSError as exc:
            _err(f"cannot read {args.enrol_file}: {exc}")
            return EXIT_USAGE
    if bool(args.tls_cert) != bool(args.tls_key):
        _err("--tls-cert and --tls-key go together")
        return EXIT_USAGE
    try:
        sinks = _sinks(args)
    except ValueError as exc:
        _err(str(exc))
        return EXIT_USAGE
    try:
        _store(args).close()  # create the tables once, and fail early without a database
        forwarder = _forwarder(args, sinks)
    except StoreUnavailable as exc:
        _err(str(exc))
        return EXIT_ENVIRONMENT
    serve(
        args.db or default_store_url(),
        Enrolment(frozenset(approved), args.trust_on_first_use),
        host=args.host,
        port=args.port,
        silence=timedelta(minutes=args.silence_minutes),
        workers=max(1, args.workers),
        certfile=args.tls_cert,
        keyfile=args.tls_key,
    )
    if forwarder is not None:
        forwarder.stop()
    return EXIT_OK


def _sinks(args: argparse.Namespace) -> list[Any]:
    """The SIEM sinks the options name; ValueError on a bad one."""
    import os

    from onbox.collector.siem import FileSink, HecSink, SyslogSink

    sinks: list[Any] = []
    if args.siem_file is not None:
        sinks.append(FileSink(args.siem_file))
    if args.siem_syslog:
        host, _, port = args.siem_syslog.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--siem-syslog wants HOST:PORT, got {args.siem_syslog!r}")
        sinks.append(SyslogSink(host, int(port), tls=args.siem_syslog_tls, ca_bundle=args.siem_ca))
    if args.siem_hec:
        token = os.environ.get("ONBOX_SIEM_HEC_TOKEN")
        if not token:
            raise ValueError("--siem-hec needs the token in $ONBOX_SIEM_HEC_TOKEN")
        sinks.append(HecSink(args.siem_hec, token, ca_bundle=args.siem_ca))
    return sinks


def _forwarder(args: argparse.Namespace, sinks: list[Any]) -> Any:
    """Start forwarding in this (parent) process, once however many workers serve."""
    if not sinks:
        return None
    from onbox.collector.siem import Forwarder

    forwarder = Forwarder(_store(args), sinks)
    forwarder.start()
    return forwarder


def run_query(args: argparse.Namespace) -> int:
    """``onbox collector query``."""
    from onbox.collector.errors import StoreUnavailable
    from onbox.collector.query import EntryQuery, find_entries

    query = EntryQuery(
        device=args.device,
        user=args.user,
        repo=args.repo,
        path=args.path,
        label=args.label,
        destination=args.destination,
        kind=args.kind,
        since=args.since,
        until=args.until,
        limit=args.limit,
        with_line=args.full,
    )
    try:
        found = find_entries(_store(args), query)
    except StoreUnavailable as exc:
        _err(str(exc))
        return EXIT_ENVIRONMENT
    if args.json:
        for item in found:
            sys.stdout.write(json.dumps(item, sort_keys=True) + "\n")
        return EXIT_OK
    table = Table("device", "seq", "time", "kind", "label", "destination", "repo", "path", "user")
    for item in found:
        table.add_row(
            str(item["device"])[:8],
            str(item["seq"]),
            str(item["time"]),
            str(item["kind"]),
            str(item["label"] or ""),
            str(item["destination"] or ""),
            str(item["repo"] or ""),
            str(item["path"] or ""),
            str(item["git_email"] or item["os_user"] or ""),
        )
    Console().print(table)
    return EXIT_OK


def run_enrol(args: argparse.Namespace) -> int:
    """``onbox collector enrol``."""
    from onbox.collector.errors import StoreUnavailable
    from onbox.collector.query import enrol

    if args.new_key is not None:
        return _re_enrol(args)
    if args.reason is not None:
        _err("--reason goes with --new-key")
        return EXIT_USAGE
    try:
        changed = enrol(_store(args), args.fingerprint, args.name)
    except StoreUnavailable as exc:
        _err(str(exc))
        return EXIT_ENVIRONMENT
    state = "enrolled" if changed else "already enrolled"
    Console(highlight=False).print(f"device {args.fingerprint} {state}")
    return EXIT_OK


def _re_enrol(args: argparse.Namespace) -> int:
    """``onbox collector enrol DEVICE --new-key FINGERPRINT``."""
    import getpass

    from onbox.collector.epochs import ReEnrolRefused, re_enrol
    from onbox.collector.errors import StoreUnavailable

    try:
        admin = getpass.getuser()
    except (KeyError, OSError):
        admin = None
    try:
        done = re_enrol(
            _store(args),
            args.fingerprint,
            args.new_key,
            name=args.name,
            admin=admin,
            reason=args.reason,
        )
    except ValueError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except ReEnrolRefused as exc:
        _err(str(exc))
        return EXIT_FAILED
    except StoreUnavailable as exc:
        _err(str(exc))
        return EXIT_ENVIRONMENT
    head = "-" if done.old_head_seq is None else str(done.old_head_seq)
    Console(highlight=False).print(
        f"device {done.old} re-enrolled under root key {done.new} (epoch {done.epoch}); "
        f"its {done.old_entries} entries up to seq {head} stay stored, uploads under the "
        "old key are refused from now on"
    )
    return EXIT_OK


def run_alerts(args: argparse.Namespace) -> int:
    """``onbox collector alerts``."""
    from onbox.collector.errors import StoreUnavailable
    from onbox.collector.query import list_alerts, list_devices

    silence = timedelta(minutes=args.silence_minutes)
    try:
        store = _store(args)
        alerts = list_alerts(store, silence=silence)
        devices = list_devices(store, silence=silence)
    except StoreUnavailable as exc:
        _err(str(exc))
        return EXIT_ENVIRONMENT
    if args.json:
        sys.stdout.write(json.dumps({"alerts": alerts, "devices": devices}, indent=2) + "\n")
    else:
        table = Table("alert", "device", "seq", "detail")
        for alert in alerts:
            seqs = (
                f"{alert['first_seq']}–{alert['last_seq']}"
                if alert["first_seq"] is not None
                else ""
            )
            table.add_row(alert["kind"], str(alert["device"])[:8], seqs, alert["detail"])
        Console().print(table)
    return EXIT_FAILED if alerts else EXIT_OK
