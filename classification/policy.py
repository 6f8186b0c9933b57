"""The classification policy: what labels exist, what maps to them, where each may go.

Public API (used by the server, routing and the signed-policy distribution)::

    parse_policy(data: bytes, source: str) -> Policy     # raises PolicyError
    load_policy(path: Path) -> Policy                    # raises PolicyError
    builtin_policy() -> Policy                           # fail-closed default

The TOML schema is documented in ``docs/policy.md``. A policy that fails to load never
replaces the one in force: callers keep the previous policy (or :func:`builtin_policy`).

Errors::

    ClassificationError
     └── PolicyError          (file, line, key: what to fix and where)
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from onbox.classification.labels import Label, LabelScale
from onbox.classification.policy_model import (
    DESTINATION_KINDS,
    ON_BOX,
    ClassificationError,
    ContentConfig,
    DestinationConfig,
    Detector,
    Policy,
    PolicyError,
    RepoRule,
)
from onbox.classification.policy_toml import parse_policy

__all__ = [
    "BUILTIN_POLICY_ID",
    "DESTINATION_KINDS",
    "ON_BOX",
    "ClassificationError",
    "ContentConfig",
    "DestinationConfig",
    "Detector",
    "Policy",
    "PolicyError",
    "RepoRule",
    "builtin_policy",
    "load_or_keep",
    "load_policy",
    "parse_policy",
    "policy_warnings",
]

logger = logging.getLogger(__name__)

BUILTIN_POLICY_ID = "builtin-fail-closed"


def load_policy(path: Path) -> Policy:
    """Read and validate the policy file at ``path``.

    Raises :class:`PolicyError` (with ``line=None``) when the file cannot be read.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(
            f"cannot read the policy file ({exc.strerror or exc}); check the path in the settings",
            file=str(path),
            line=None,
            key=None,
        ) from None
    policy = parse_policy(data, str(path))
    logger.info("loaded policy %s from %s (sha256 %s)", policy.id, path, policy.sha256[:12])
    return policy


def load_or_keep(path: Path, previous: Policy | None) -> tuple[Policy, PolicyError | None]:
    """Load ``path``; on failure keep ``previous`` (or the built-in policy) and say why.

    This is the rule for every reload: a policy that fails validation never replaces
    the one in force.
    """
    try:
        return load_policy(path), None
    except PolicyError as exc:
        logger.warning(
            "policy %s not applied, keeping %s: %s",
            path,
            previous.id if previous else BUILTIN_POLICY_ID,
            exc,
        )
        return (previous if previous is not None else builtin_policy()), exc


def policy_warnings(policy: Policy) -> list[str]:
    """Problems that do not invalidate ``policy`` but that its admin should hear about.

    ``[[repos]]`` tags that ``[tags]`` does not map (compared case-insensitively, as
    classification does), and every rule that can never change a label: a tag, owner,
    detector or content label no higher than the lowest base any file can have (signals
    only raise), a repo rule's label that an earlier rule always decides first, and
    allowlist entries past their expiry; and root commits pinned by two rules.
    """
    known = {name.lower() for name in policy.tags}
    warnings = []
    for index, rule in enumerate(policy.repos):
        for tag in rule.tags:
            if tag.lower() not in known:
                warnings.append(
                    f"{policy.where(f'repos.{index}.tags')}: [repos.{index}.tags] tag {tag!r} "
                    "is not in [tags]: it changes no label (a typo?)"
                )
    return warnings + _never_changes_a_label(policy)


def _never_changes_a_label(policy: Policy) -> list[str]:
    """Rules whose label no file can ever get from them (see :func:`policy_warnings`)."""
    warnings = []
    shadowed: set[int] = set()
    for index, rule in enumerate(policy.repos):
        if rule.label is None or any(c in rule.match for c in "*?["):
            continue
        for earlier_index, earlier in enumerate(policy.repos[:index]):
            if earlier.label is not None and fnmatch.fnmatchcase(
                rule.match.lower(), earlier.match.lower()
            ):
                key = f"repos.{index}.label"
                shadowed.add(index)
                warnings.append(
                    f"{policy.where(key)}: [{key}] never applies: the earlier rule "
                    f"{earlier.match!r} ({policy.where(f'repos.{earlier_index}')}) matches "
                    f"{rule.match!r} too and the first matching label wins; move this rule up"
                )
                break
    bases = [r.label for i, r in enumerate(policy.repos) if r.label and i not in shadowed]
    floor = min([policy.default_label, *bases])
    why = (
        f"no file's base label is below {floor.name} (default_label and every [[repos]] "
        "label), and this signal can only raise: it can never change a label"
    )
    raising: list[tuple[str, Label | None]] = [(f"tags.{k}", v) for k, v in policy.tags.items()]
    raising += [(f"owners.{k}", v) for k, v in policy.owners.items()]
    raising += [(f"detectors.{i}.label", d.label) for i, d in enumerate(policy.detectors)]
    if policy.content is not None:
        raising += [
            ("content.secrets", policy.content.secrets),
            ("content.pii", policy.content.pii),
        ]
    for key, label in raising:
        if label is not None and label <= floor:
            warnings.append(f"{policy.where(key)}: [{key}] is {label.name}; {why}")
    pinned: dict[str, int] = {}
    for index, rule in enumerate(policy.repos):
        for root in rule.root_commits:
            first = pinned.setdefault(root, index)
            if first != index:
                key = f"repos.{index}.root_commits"
                warnings.append(
                    f"{policy.where(key)}: [{key}] root commit {root[:12]} is also pinned by "
                    f"{policy.repos[first].match!r} ({policy.where(f'repos.{first}')}): the "
                    "histories are related (a fork?), so checkouts of either get the higher "
                    "of both labels"
                )
    now = datetime.now(UTC)
    for index, entry in enumerate(policy.allowlist):
        if not entry.applies(now):
            key = f"allowlist.{index}"
            warnings.append(
                f"{policy.where(key)}: [{key}] expired on {entry.expires.date().isoformat()}: "
                "it suppresses nothing; renew it or remove it"
            )
    return warnings


@cache
def builtin_policy() -> Policy:
    """The policy in force when no admin policy is configured or loadable.

    Every file is ``restricted`` and completions stay on the machine.
    """
    scale = LabelScale()
    highest = scale.highest
    on_box = DestinationConfig(ON_BOX, "llama-cpp", highest)
    return Policy(
        id=BUILTIN_POLICY_ID,
        scale=scale,
        default_label=highest,
        destinations={ON_BOX: on_box},
        routes={label.name: (ON_BOX,) for label in scale.labels()},
        source="<builtin>",
        sha256=hashlib.sha256(BUILTIN_POLICY_ID.encode()).hexdigest(),
        content=ContentConfig(secrets=highest, pii=highest),
    )
