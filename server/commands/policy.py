"""``onbox policy init|check|diff|sign|cosign|verify|pull|status``: admin policy.

Admins: ``init`` writes a commented example, ``check`` validates one (and shows the
labels it would give a sample repo), ``diff`` lists the files whose label a new policy
changes and why, ``sign`` makes a signed bundle, ``cosign`` adds one more signature to
it (k-of-n with offline keys), ``verify`` checks a bundle against the trust root.
Workstations: ``pull`` fetches the configured sources and applies what verifies,
``status`` shows the policy in force.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from onbox.server.cli import EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_OK, EXIT_USAGE

logger = logging.getLogger(__name__)

EXAMPLE_POLICY = """\
# Onbox classification policy. Check it with `onbox policy check FILE --repo DIR`,
# sign it with `onbox policy sign FILE --key admin.key --serial N --expires DATE`.

[policy]
id = "acme-2026-11"                            # shown in every decision and journal entry
labels = ["public", "internal", "restricted"]  # ordered, lowest first
default_label = "restricted"                   # anything unknown, and every fail-closed answer

# Repositories: patterns match the normalised remote "host/owner/name"; the first rule
# with a label sets a repository's base label. Signals below can only raise it.
[[repos]]
match = "github.com/acme/docs"
label = "public"          # only the signed policy may set a label lower than the default
# root_commits = ["<git rev-list --max-parents=0 HEAD>"]  # bind the name to its history

[[repos]]
match = "github.com/acme/*"
label = "internal"

[tags]                    # tag -> label (from .onbox.toml or onbox-tags in .gitattributes)
payments = "restricted"

[owners]                  # CODEOWNERS owner -> label
"@acme/payments" = "restricted"

[content]                 # labels for the built-in secret and PII detectors
secrets = "restricted"
pii = "restricted"

[[detectors]]             # a policy-defined detector (RE2 syntax: no backreferences)
name = "patient-id"
kind = "regex"
pattern = 'PAT-[0-9]{8}'
label = "restricted"

[destinations.on-box]
kind = "llama-cpp"
clearance = "restricted"

[routes]                  # label -> destinations in order; on-box is always the last resort
public = ["on-box"]
internal = ["on-box"]
restricted = ["on-box"]
"""


def register(sub: Any) -> None:
    """Add ``onbox policy`` and its subcommands."""
    p: argparse.ArgumentParser = sub.add_parser(
        "policy",
        help="write, check, sign, verify and pull the signed classification policy",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit codes: 0 ok, 1 check failed (invalid, unsigned, rejected), 2 usage"
        " error, 3 environment error (no trust root, unreadable key).",
    )
    ps = p.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)

    q = ps.add_parser("init", help="write a commented example policy")
    q.add_argument("--out", type=Path, help="file to write (default: stdout)")
    q.set_defaults(func=run_init)

    q = ps.add_parser("check", help="validate a policy TOML file")
    q.add_argument("file", type=Path)
    q.add_argument("--repo", type=Path, help="show the labels it gives this repo's files")
    q.add_argument("--limit", type=int, default=200, help="files shown with --repo")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=run_check)

    q = ps.add_parser("diff", help="list the files whose label changes between two policies")
    q.add_argument("old", type=Path, help="the policy in force (TOML or bundle)")
    q.add_argument("new", type=Path, help="the candidate (TOML or bundle)")
    q.add_argument("--repo", type=Path, action="append", required=True, help="repeatable")
    q.add_argument("--limit", type=int, default=200, help="changes shown (all with --json)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=run_diff)

    q = ps.add_parser("sign", help="sign a policy into a bundle")
    q.add_argument("file", type=Path)
    q.add_argument("--key", type=Path, action="append", required=True, help="private key")
    q.add_argument("--serial", type=int, required=True, help="greater than the last one")
    q.add_argument("--expires", required=True, help="ISO date or date-time (UTC if no zone)")
    q.add_argument("--out", type=Path, required=True, help="bundle file (.onbox-policy)")
    q.set_defaults(func=run_sign)

    q = ps.add_parser("cosign", help="add one signature to a bundle (valid at the threshold)")
    q.add_argument("bundle", type=Path)
    q.add_argument("--key", type=Path, required=True, help="this signer's private key")
    q.add_argument("--out", type=Path, help="write here (default: replace BUNDLE)")
    q.add_argument("--trust-root", type=Path, help="to count signatures against the threshold")
    q.set_defaults(func=run_cosign)

    q = ps.add_parser("verify", help="check a bundle's signatures against the trust root")
    q.add_argument("bundle", type=Path)
    q.add_argument("--trust-root", type=Path, help="default: ONBOX_TRUST_ROOT or site config")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=run_verify)

    q = ps.add_parser("pull", help="fetch the configured sources and apply what verifies")
    q.add_argument("--source", action="append", default=[], help="dir, git+URL or https URL")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=run_pull)

    q = ps.add_parser("status", help="show the trust root and the policy in force")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=run_status)


def _err(message: str) -> None:
    print(f"onbox policy: {message}", file=sys.stderr)


def _refused_destinations(policy: Any) -> list[str]:
    """``file:line: [destinations.NAME] why`` for each destination that would not be built."""
    from onbox.inference.remote import destination_refusal

    problems: list[str] = []
    for name, config in policy.destinations.items():
        why = destination_refusal(config)
        if why is not None:
            key = f"destinations.{name}.base_url"
            problems.append(f"{policy.where(key)}: [{key}] {why}")
    return problems


def run_init(args: argparse.Namespace) -> int:
    """Write the example policy."""
    if args.out is None:
        sys.stdout.write(EXAMPLE_POLICY)
        return EXIT_OK
    if args.out.exists():
        _err(f"{args.out} exists; choose another --out or remove it")
        return EXIT_USAGE
    args.out.write_text(EXAMPLE_POLICY, "utf-8")
    print(f"wrote {args.out}; edit it, then `onbox policy check {args.out}`")
    return EXIT_OK


def run_check(args: argparse.Namespace) -> int:
    """Validate a policy and optionally label a sample repo with it."""
    from onbox.classification.policy import PolicyError, load_policy, policy_warnings

    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        _err(f"invalid: {exc}")
        return EXIT_FAILED
    refused = _refused_destinations(policy)
    for problem in refused:
        _err(f"invalid: {problem}")
    if refused:
        return EXIT_FAILED
    warnings = policy_warnings(policy)
    rows = _label_repo(policy, args.repo, args.limit, warnings) if args.repo else []
    for warning in warnings:
        _err(f"warning: {warning}")
    if args.json:
        out = {"valid": True, "id": policy.id, "warnings": warnings, "files": rows}
        print(json.dumps(out, indent=2))
        return EXIT_OK
    print(
        f"{args.file}: valid policy {policy.id!r} ({len(policy.scale.names)} labels,"
        f" {len(policy.repos)} repo rules, {len(policy.detectors)} detectors)"
    )
    if rows:
        width = max(len(r["path"]) for r in rows)
        print(f"\n{'file'.ljust(width)}  {'label':<11} deciding")
        for row in rows:
            print(f"{row['path'].ljust(width)}  {row['label']:<11} {', '.join(row['deciding'])}")
    return EXIT_OK


def _label_repo(policy: Any, repo: Path, limit: int, warnings: list[str]) -> list[dict[str, Any]]:
    from onbox.classification.classifier import Classifier
    from onbox.classification.signals import UNKNOWN_TAG

    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "ls-files", "-z"], capture_output=True, check=True
        ).stdout.decode("utf-8", "replace")
        files = [f for f in out.split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = sorted(
            str(p.relative_to(repo))
            for p in repo.rglob("*")
            if p.is_file() and ".git" not in p.parts
        )
    classifier = Classifier(policy)
    rows = []
    for rel in files[:limit]:
        decision = classifier.classify_path((repo / rel).resolve())
        for reason in decision.reasons:
            unknown = f"{reason.source}: {reason.message}"
            in_policy = (reason.source or "").startswith(policy.source)  # warned above
            if UNKNOWN_TAG in reason.message and not in_policy and unknown not in warnings:
                warnings.append(unknown)
        rows.append(
            {"path": rel, "label": decision.label.name, "deciding": list(decision.deciding)}
        )
    return rows


def run_sign(args: argparse.Namespace) -> int:
    """Validate and sign a policy into a bundle."""
    from onbox.classification.bundle import make_bundle, parse_time
    from onbox.classification.policy import PolicyError, parse_policy
    from onbox.classification.trust import DistributionError, key_id, load_private_key

    try:
        data = args.file.read_bytes()
        refused = _refused_destinations(parse_policy(data, str(args.file)))
        if refused:
            for problem in refused:
                _err(f"refusing to sign an invalid policy: {problem}")
            return EXIT_FAILED
        expires = parse_time(args.expires, "--expires")
        keys = [load_private_key(k) for k in args.key]
        bundle = make_bundle(data, args.serial, expires, keys)
    except PolicyError as exc:
        _err(f"refusing to sign an invalid policy: {exc}")
        return EXIT_FAILED
    except (OSError, ValueError, DistributionError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    refusal = _workstation_refusal(bundle)
    if refusal:
        _err(f"refusing to sign: every workstation would refuse this bundle: {refusal}")
        return EXIT_FAILED
    args.out.write_bytes(bundle.to_bytes())
    signers = ", ".join(key_id(k.public_key())[:16] for k in keys)
    print(f"wrote {args.out}: serial {bundle.serial}, expires {args.expires}, signed by {signers}")
    _print_threshold(bundle, None)
    return EXIT_OK


def _workstation_refusal(bundle: Any) -> str | None:
    """Why a workstation would refuse ``bundle`` whatever its signatures, or ``None``."""
    from onbox.classification.bundle import MAX_BUNDLE_BYTES, PolicyBundle
    from onbox.classification.policy import PolicyError, parse_policy
    from onbox.classification.trust import BundleError

    data = bundle.to_bytes()
    try:
        PolicyBundle.from_bytes(data)  # the size cap and the format, as workstations read it
        parse_policy(bundle.policy, f"policy bundle serial {bundle.serial}")
    except BundleError as exc:
        return f"{exc} (the cap is {MAX_BUNDLE_BYTES} bytes of bundle, the policy base64-encoded)"
    except PolicyError as exc:
        return f"policy is invalid: {exc}"
    if bundle.is_expired(datetime.now(UTC)):
        return "it has already expired"
    return None


def _print_threshold(bundle: Any, trust_root: Path | None) -> None:
    """Say how many of the trust root's required signatures ``bundle`` has, if known."""
    from onbox import paths
    from onbox.classification.trust import DistributionError, TrustRoot

    path = trust_root or paths.trust_root_path()
    try:
        root = TrustRoot.load(path)
    except DistributionError:
        print(
            f"{len(bundle.signatures)} signature(s); check them with `onbox policy verify`"
            " against the trust root"
        )
        return
    try:
        signers = root.verify(bundle.signed_payload(), bundle.signatures, "bundle")
        print(f"valid: signed by {len(signers)} of the {root.threshold} keys required ({path})")
    except DistributionError:
        trusted = {s.keyid for s in bundle.signatures} & set(root.keys)
        print(
            f"not valid yet: {len(trusted)} of the {root.threshold} signatures required ({path});"
            " add more with `onbox policy cosign BUNDLE --key KEY`"
        )


def run_cosign(args: argparse.Namespace) -> int:
    """Add one signature to an existing bundle, after the checks workstations make."""
    from onbox.classification.bundle import PolicyBundle, format_time
    from onbox.classification.trust import DistributionError, key_id, load_private_key

    try:
        bundle = PolicyBundle.from_bytes(args.bundle.read_bytes())
        key = load_private_key(args.key)
    except OSError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except DistributionError as exc:
        _err(f"{exc}")
        return EXIT_USAGE if "key" in str(exc) else EXIT_FAILED
    refusal = _workstation_refusal(bundle)
    if refusal:
        _err(f"refusing to cosign: every workstation would refuse this bundle: {refusal}")
        return EXIT_FAILED
    kid = key_id(key.public_key())
    already = any(s.keyid == kid for s in bundle.signatures)
    signed = bundle.signed_by([key])
    out = args.out or args.bundle
    out.write_bytes(signed.to_bytes())
    print(
        f"{'re-signed' if already else 'added a signature'} by {kid[:16]} to {out}:"
        f" policy sha256 {signed.policy_sha256[:16]}, serial {signed.serial},"
        f" expires {format_time(signed.expires)}; {len(signed.signatures)} signature(s)"
    )
    _print_threshold(signed, args.trust_root)
    return EXIT_OK


def _read_policy(path: Path) -> Any:
    """A policy from a TOML file or a bundle (its signatures are not checked here)."""
    from onbox.classification.bundle import PolicyBundle
    from onbox.classification.policy import parse_policy
    from onbox.classification.trust import BundleError

    data = path.read_bytes()
    if data.lstrip().startswith(b"{"):
        try:
            bundle = PolicyBundle.from_bytes(data)
            return parse_policy(bundle.policy, f"{path} (serial {bundle.serial})")
        except BundleError:
            pass
    return parse_policy(data, str(path))


def run_diff(args: argparse.Namespace) -> int:
    """List the files whose label changes from OLD to NEW, with the reasons on each side."""
    from onbox.classification.policy import PolicyError
    from onbox.classification.policy_diff import diff_policies

    try:
        old, new = _read_policy(args.old), _read_policy(args.new)
    except OSError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except PolicyError as exc:
        _err(f"invalid: {exc}")
        return EXIT_FAILED
    missing = [str(r) for r in args.repo if not r.is_dir()]
    if missing:
        _err(f"not a directory: {', '.join(missing)}")
        return EXIT_USAGE
    with _progress("labelling files under both policies", quiet=args.json) as progress:
        diff = diff_policies(old, new, args.repo, progress)
    if args.json:
        print(json.dumps(diff.to_json(), indent=2))
        return EXIT_OK
    summary = diff.to_json()
    print(
        f"{diff.files} files: {summary['changed']} change label under {new.id!r}"
        f" ({summary['raised']} raised, {summary['lowered']} lowered) compared with {old.id!r}"
    )
    for change in diff.changes[: args.limit]:
        print(f"\n{change.repo}/{change.path}: {change.old} -> {change.new}")
        for line in change.old_why:
            print(f"  was: {line}")
        for line in change.new_why:
            print(f"  now: {line}")
    if len(diff.changes) > args.limit:
        print(f"\n... and {len(diff.changes) - args.limit} more (all with --json)")
    for error in diff.errors:
        _err(f"warning: {error}")
    return EXIT_OK


@contextlib.contextmanager
def _progress(what: str, quiet: bool) -> Iterator[Any]:
    """A progress callback drawing a bar on stderr (nothing when quiet or not a terminal)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        yield None
        return
    with Progress(
        what, BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    ) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def run_verify(args: argparse.Namespace) -> int:
    """Verify a bundle against the trust root and validate its policy."""
    from onbox import paths
    from onbox.classification.bundle import PolicyBundle, format_time
    from onbox.classification.policy import PolicyError, parse_policy
    from onbox.classification.trust import (
        DistributionError,
        SignatureError,
        TrustRoot,
        TrustRootError,
    )

    try:
        root = TrustRoot.load(args.trust_root or paths.trust_root_path())
    except TrustRootError as exc:
        _err(str(exc))
        return EXIT_ENVIRONMENT
    try:
        bundle = PolicyBundle.from_bytes(args.bundle.read_bytes())
        signers = bundle.verify(root)
        policy = parse_policy(bundle.policy, f"{args.bundle} (serial {bundle.serial})")
    except OSError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except (SignatureError, DistributionError, PolicyError) as exc:
        _err(f"{args.bundle}: {exc}")
        return EXIT_FAILED
    expired = bundle.is_expired(datetime.now(UTC))
    info = {
        "valid": not expired,
        "policy_id": policy.id,
        "serial": bundle.serial,
        "issued": format_time(bundle.issued),
        "expires": format_time(bundle.expires),
        "expired": expired,
        "signers": sorted(signers),
        "threshold": root.threshold,
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(
            f"{args.bundle}: policy {policy.id!r} serial {bundle.serial}, signed by"
            f" {len(signers)} of {root.threshold} required keys, expires {info['expires']}"
            + (" (EXPIRED)" if expired else "")
        )
    return EXIT_FAILED if expired else EXIT_OK


def run_pull(args: argparse.Namespace) -> int:
    """Fetch sources and apply the newest valid bundle to the local store."""
    from onbox.classification.policy_store import PolicyStore
    from onbox.classification.sources import configured_sources, parse_source, pull
    from onbox.classification.trust import SourceError

    try:
        sources = [parse_source(s) for s in args.source] or configured_sources()
    except SourceError as exc:
        _err(str(exc))
        return EXIT_USAGE
    if not sources:
        _err("no policy sources; pass --source or set [policy] sources in settings.toml")
        return EXIT_USAGE
    from onbox.classification.sources import DirectorySource

    absent = [s for s in sources if isinstance(s, DirectorySource) and not s.path.is_dir()]
    for source in absent:
        _err(f"{source.name}: no such directory")
    if absent and args.source:
        return EXIT_FAILED
    journal = _open_journal()
    store = PolicyStore(journal=journal)
    try:
        with _pulling(len(sources), quiet=args.json):
            results = pull(store, sources)
    finally:
        _close(journal)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        for r in results:
            mark = "applied" if r.applied else ("REJECTED" if r.rejected else "failed")
            print(f"{mark:8} {r.origin}: {r.reason}")
        print(f"in force: {store.current().id} serial {store.current().serial}")
        if not results:
            print("no source held a policy bundle")
    if not results or absent:
        return EXIT_FAILED
    return EXIT_FAILED if any(r.rejected or not r.applied for r in results) else EXIT_OK


@contextlib.contextmanager
def _pulling(count: int, quiet: bool) -> Iterator[None]:
    """A spinner on stderr while sources are fetched (a git clone can take a while)."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        yield
        return
    what = f"pulling policy from {count} source{'s' if count != 1 else ''}"
    with Progress(SpinnerColumn(), what, TimeElapsedColumn(), console=console, transient=True):
        yield


def _open_journal() -> Any:
    """The audit journal, or ``None`` (with a warning) when it cannot be opened."""
    try:
        from onbox.audit import open_journal  # type: ignore[attr-defined,unused-ignore]
        from onbox.server.journal_location import journal_dir_in_force

        return open_journal(journal_dir_in_force())
    except Exception as exc:  # the journal is optional for a pull; say so and go on
        logger.warning("policy decisions will not be journaled: %s", exc)
        return None


def _close(journal: Any) -> None:
    """Flush and close a journal from :func:`_open_journal` (``None`` is fine)."""
    if journal is not None:
        try:
            journal.close()
        except Exception as exc:
            logger.warning("closing the journal failed: %s", exc)


def run_status(args: argparse.Namespace) -> int:
    """Show the trust root, the policy in force and the last rejection."""
    from onbox.classification.policy_store import describe_policy_state

    state = describe_policy_state()
    if args.json:
        print(json.dumps(state, indent=2))
        return EXIT_OK
    root = state["trust_root"]
    pol = state["policy"]
    print(
        f"trust root: {root['path']} "
        + (
            f"v{root['version']}, {root['threshold']} of {len(root['keys'])} keys"
            if root.get("keys")
            else f"MISSING/INVALID ({root.get('error')})"
        )
    )
    print(f"policy:     {pol['id']} serial {pol['serial']} expires {pol['expires'] or '-'}")
    if state["warning"]:
        print(f"WARNING:    {state['warning']}")
    if state["last_rejection"]:
        print(f"last rejection: {state['last_rejection']['reason']}")
    return EXIT_OK
