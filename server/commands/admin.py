"""``onbox admin keygen`` and ``onbox admin trust-root init|rotate|sign|verify|install``.

The admin side of signed policy: Ed25519 key pairs (private key file mode 0600), the
trust root listing the admin public keys and the threshold, and its rotation. A new
trust root (``rotate``) has version old+1 and must be signed (``sign``) by a threshold of
the old keys and a threshold of the new ones before a workstation accepts it
(``install``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from onbox.server.cli import EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_OK, EXIT_USAGE


def register(sub: Any) -> None:
    """Add ``onbox admin`` and its subcommands."""
    p: argparse.ArgumentParser = sub.add_parser(
        "admin",
        help="admin keys and the trust root for signed policy",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit codes: 0 ok, 1 verification failed, 2 usage or input error,"
        " 3 environment error (cannot write the trust root).",
    )
    ps = p.add_subparsers(dest="admin_command", metavar="SUBCOMMAND", required=True)

    q = ps.add_parser("keygen", help="make an Ed25519 admin key pair")
    q.add_argument("--out", type=Path, required=True, help="writes OUT.key (0600) and OUT.pub")
    q.set_defaults(func=run_keygen)

    tr = ps.add_parser("trust-root", help="create, rotate, sign, verify, install trust roots")
    ts = tr.add_subparsers(dest="trust_root_command", metavar="SUBCOMMAND", required=True)

    q = ts.add_parser("init", help="a version 1 trust root")
    q.add_argument("--key", action="append", required=True, help="public key (.pub or base64)")
    q.add_argument("--threshold", type=int, required=True, help="distinct keys that must sign")
    q.add_argument("--out", type=Path, required=True)
    q.set_defaults(func=run_init)

    q = ts.add_parser("rotate", help="the next version of a trust root (unsigned)")
    q.add_argument("--from", dest="previous", type=Path, required=True, help="current root")
    q.add_argument("--key", action="append", required=True, help="public key (.pub or base64)")
    q.add_argument("--threshold", type=int, required=True)
    q.add_argument("--out", type=Path, required=True)
    q.set_defaults(func=run_rotate)

    q = ts.add_parser("sign", help="add signatures to a trust root")
    q.add_argument("root", type=Path)
    q.add_argument("--key", type=Path, action="append", required=True, help="private key")
    q.add_argument("--out", type=Path, help="default: overwrite ROOT")
    q.set_defaults(func=run_sign)

    q = ts.add_parser("verify", help="check that NEW is a valid rotation of PREVIOUS")
    q.add_argument("new", type=Path)
    q.add_argument("--previous", type=Path, help="default: the installed trust root")
    q.set_defaults(func=run_verify)

    q = ts.add_parser("install", help="install a trust root (rotation checked if one exists)")
    q.add_argument("root", type=Path)
    q.add_argument("--trust-root", type=Path, help="default: ONBOX_TRUST_ROOT or site config")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=run_install)


def _err(message: str) -> None:
    print(f"onbox admin: {message}", file=sys.stderr)


def run_keygen(args: argparse.Namespace) -> int:
    """Write OUT.key (PKCS#8 PEM, 0600) and OUT.pub (base64 raw key)."""
    from onbox.classification.trust import (
        b64encode,
        generate_private_key,
        key_id,
        private_key_pem,
        public_bytes,
    )

    key_path = args.out.with_name(args.out.name + ".key")
    pub_path = args.out.with_name(args.out.name + ".pub")
    if key_path.exists() or pub_path.exists():
        _err(f"{key_path} or {pub_path} exists; refusing to overwrite a key")
        return EXIT_USAGE
    private = generate_private_key()
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_key_pem(private))
        os.chmod(key_path, 0o600)  # umask cannot widen it, but be explicit
        pub_path.write_text(b64encode(public_bytes(private.public_key())) + "\n", "ascii")
    except OSError as exc:
        _err(f"cannot write key files: {exc}")
        return EXIT_ENVIRONMENT
    print(f"key id {key_id(private.public_key())}")
    print(f"private key {key_path} (keep it offline), public key {pub_path}")
    return EXIT_OK


def _write_root(root: Any, out: Path) -> int:
    try:
        out.write_bytes(root.to_bytes())
    except OSError as exc:
        _err(f"cannot write {out}: {exc}")
        return EXIT_ENVIRONMENT
    print(
        f"wrote {out}: version {root.version}, {root.threshold} of {len(root.keys)} keys,"
        f" {len(root.signatures)} signature(s)"
    )
    return EXIT_OK


def run_init(args: argparse.Namespace) -> int:
    """Create a version 1 trust root."""
    from onbox.classification.trust import DistributionError, TrustRoot, load_public_key

    try:
        root = TrustRoot.create([load_public_key(k) for k in args.key], args.threshold)
    except DistributionError as exc:
        _err(str(exc))
        return EXIT_USAGE
    return _write_root(root, args.out)


def run_rotate(args: argparse.Namespace) -> int:
    """Create the unsigned successor of ``--from`` with the given keys and threshold."""
    from onbox.classification.trust import DistributionError, TrustRoot, load_public_key

    try:
        previous = TrustRoot.load(args.previous)
        root = TrustRoot.create(
            [load_public_key(k) for k in args.key], args.threshold, previous.version + 1
        )
    except DistributionError as exc:
        _err(str(exc))
        return EXIT_USAGE
    code = _write_root(root, args.out)
    if code == EXIT_OK:
        print(
            f"now sign it with {previous.threshold} old key(s) and {root.threshold} new key(s):"
            f" onbox admin trust-root sign {args.out} --key ..."
        )
    return code


def run_sign(args: argparse.Namespace) -> int:
    """Add signatures by the given private keys."""
    from onbox.classification.trust import DistributionError, TrustRoot, load_private_key

    try:
        root = TrustRoot.load(args.root)
        for key in args.key:
            root = root.with_signature(load_private_key(key))
    except DistributionError as exc:
        _err(str(exc))
        return EXIT_USAGE
    return _write_root(root, args.out or args.root)


def run_verify(args: argparse.Namespace) -> int:
    """Check a rotation without installing it."""
    from onbox import paths
    from onbox.classification.trust import RotationError, TrustRoot, TrustRootError

    try:
        previous = TrustRoot.load(args.previous or paths.trust_root_path())
        new = TrustRoot.load(args.new)
    except TrustRootError as exc:
        _err(str(exc))
        return EXIT_USAGE
    try:
        previous.accept_successor(new)
    except RotationError as exc:
        _err(str(exc))
        return EXIT_FAILED
    print(f"{args.new}: valid rotation from version {previous.version} to {new.version}")
    return EXIT_OK


def run_install(args: argparse.Namespace) -> int:
    """Install a trust root on this machine, journaling the outcome."""
    from onbox.classification.policy_store import PolicyStore
    from onbox.server.commands.policy import _close, _open_journal

    try:
        data = args.root.read_bytes()
    except OSError as exc:
        _err(str(exc))
        return EXIT_USAGE
    journal = _open_journal()
    store = PolicyStore(trust_root_path=args.trust_root, journal=journal)
    try:
        result = store.rotate_trust_root(data, str(args.root))
    except OSError as exc:
        _close(journal)
        _err(
            f"cannot write the trust root {store.trust_root_path}: {exc} (run as root, or set"
            " ONBOX_TRUST_ROOT to a writable path)"
        )
        return EXIT_ENVIRONMENT
    _close(journal)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    elif result.applied:
        print(f"{store.trust_root_path}: {result.reason}")
    else:
        _err(f"rejected: {result.reason}")
    return EXIT_OK if result.applied else EXIT_FAILED
