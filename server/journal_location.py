"""Where this workstation's audit journal lives: the machine policy's place, when managed.

On a managed workstation (an admin trust root is installed, :func:`onbox.paths.trust_root_path`)
the journal directory is the signed policy's ``[audit] journal_dir``, and the developer's
``onbox.journal.dir`` setting is ignored: a journal the developer can point elsewhere is
not evidence. Without a trust root the setting applies as before; with neither, the
default (:func:`onbox.paths.journal_dir`, under the data directory).

``journal_dir`` is kept in the policy as written, because one policy serves many users
and machines: ``~`` is the home of the user running Onbox and ``$VAR``/``${VAR}``
(``%VAR%`` on Windows) are that process's environment variables. A variable that is not
set leaves the journal unopenable (nothing then leaves the machine) rather than falling
back to a place the developer controls. The last *verified* policy counts even after it
expired: egress fails closed then, but the journal does not move.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from onbox import paths
from onbox.classification.policy_store import PolicyStore

#: what :attr:`JournalLocation.source` says
POLICY, SETTING, DEFAULT = "machine policy", "onbox.journal.dir", "default"


@dataclass(frozen=True)
class JournalLocation:
    """The journal directory in force, where it came from, and what the user should know."""

    directory: Path | None  # None only with ``error``
    source: str  # POLICY, SETTING or DEFAULT
    note: str | None = None  # e.g. why the user setting is ignored
    error: str | None = None  # the policy's directory cannot be worked out here

    def to_json(self) -> dict[str, str | None]:
        """For ``onbox/health`` and ``onbox doctor``."""
        return {
            "dir": str(self.directory) if self.directory else None,
            "source": self.source,
            "note": self.note,
        }


def expand(raw: str) -> Path:
    """``raw`` with ``~`` and environment variables expanded; ValueError if it stays unsure."""
    text = os.path.expandvars(os.path.expanduser(raw))
    unset = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)|%([A-Za-z_][A-Za-z0-9_]*)%", text)
    if unset:
        names = ", ".join(sorted({a or b for a, b in unset}))
        raise ValueError(f"{raw!r} names environment variables that are not set here: {names}")
    if text.startswith("~"):
        raise ValueError(f"{raw!r}: the home directory of {text.split('/')[0]!r} is unknown")
    path = Path(text)
    if not path.is_absolute():
        raise ValueError(f"{raw!r} expands to {text!r}, which is not an absolute path")
    return path


def journal_location(user_setting: str | None, store: PolicyStore | None = None) -> JournalLocation:
    """The journal directory for ``onbox serve`` and the ``onbox journal`` commands."""
    store = store or PolicyStore()
    if not store.trust_root_path.exists():
        if user_setting:
            return JournalLocation(Path(user_setting).expanduser(), SETTING)
        return JournalLocation(paths.journal_dir(), DEFAULT)
    policy = store.verified_policy()
    ignored = (
        f"onbox.journal.dir ({user_setting}) is ignored on a managed workstation (trust root "
        f"at {store.trust_root_path}); "
        if user_setting
        else ""
    )
    if policy is None or policy.journal_dir is None:
        where = paths.journal_dir()
        note = (
            f"{ignored}the journal stays at {where}, since the signed policy sets no "
            "[audit] journal_dir"
            if ignored
            else None
        )
        return JournalLocation(where, DEFAULT, note)
    try:
        where = expand(policy.journal_dir)
    except ValueError as exc:
        return JournalLocation(
            None,
            POLICY,
            error=f"the signed policy's [audit] journal_dir cannot be used here: {exc}; "
            "nothing leaves this machine until the policy or the environment is fixed",
        )
    note = f"{ignored}the signed policy puts the journal at {where}" if ignored else None
    return JournalLocation(where, POLICY, note)


def journal_dir_in_force() -> Path:
    """The directory the ``onbox journal`` commands default to: this workstation's journal.

    The editor's ``onbox.journal.dir`` is not known outside ``onbox serve``; a managed
    workstation's journal is where its signed policy says. Raises ValueError when that
    directory cannot be worked out here.
    """
    location = journal_location(None)
    if location.directory is None:
        raise ValueError(location.error)
    return location.directory
