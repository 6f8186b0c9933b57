"""What classification answers: a :class:`Decision` with its reasons and findings.

Routing reads ``Decision.label`` to choose a destination and ``Decision.findings`` to
redact secrets and PII before anything leaves the machine. Every reason points at the
signal's source (``path:line``) so that a developer can see exactly why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from onbox.classification.labels import Label

#: Signal names used in :attr:`Reason.signal`.
SIGNALS = (
    "policy-default",  # the policy's default label for anything not otherwise known
    "policy-repo",  # an admin rule in the signed policy that sets a repo's label (may lower)
    "repo-tag",  # a tag from the policy's repo rules or the in-repo .onbox.toml
    "path-attribute",  # onbox-label / onbox-tags in .gitattributes
    "codeowners",  # an owner mapped to a label by the policy
    "content",  # a secret, PII or policy detector found in the text
    "marker",  # a manual `onbox: <label>` comment
    "repo-ignored",  # git ignores the file and does not track it: [policy] ignored_label
    "fail-closed",  # something could not be resolved; the highest label applies
    "allowlisted",  # a content finding the policy's [[allowlist]] accepts: shown, never raises
)


@dataclass(frozen=True)
class Reason:
    """One signal's contribution to a decision."""

    signal: str
    label: Label
    message: str
    source: str | None = None  # "path:line" of the rule or text that produced it

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (used by onbox/explain, the CLI and the journal)."""
        return {
            "signal": self.signal,
            "label": self.label.name,
            "message": self.message,
            "source": self.source,
        }


@dataclass(frozen=True)
class Finding:
    """A sensitive span in a document's text.

    ``start``/``end`` are offsets into the Python ``str`` of the text (code points).
    ``kind`` is ``"secret"``, ``"pii"`` or ``"detector"``; ``type`` names what was found
    (``aws-access-key``, ``card-number``, ``stripe-import``…) and becomes the redaction
    placeholder ``<ONBOX_REDACTED:type>``.
    """

    kind: str
    type: str
    start: int
    end: int
    label: Label
    detector: str = ""
    line: int = 0  # 1-based line of ``start``

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping without the sensitive value itself."""
        return {
            "kind": self.kind,
            "type": self.type,
            "start": self.start,
            "end": self.end,
            "line": self.line,
            "label": self.label.name,
            "detector": self.detector,
        }


@dataclass(frozen=True)
class Suppressed:
    """A content finding that an ``[[allowlist]]`` entry of the signed policy accepts."""

    finding: Finding
    reason: str  # the admin's reason
    source: str  # "policy.toml:line" of the entry
    expires: str  # ISO date

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping without the matched value."""
        return {
            "finding": self.finding.to_json(),
            "reason": self.reason,
            "source": self.source,
            "expires": self.expires,
        }


@dataclass(frozen=True)
class Decision:
    """The label of one document version, and why."""

    label: Label
    reasons: tuple[Reason, ...]
    policy_id: str
    policy_serial: int = 0
    findings: tuple[Finding, ...] = ()
    repo: str | None = None  # normalised repo identity, e.g. "github.com/acme/payments"
    path: str | None = None  # path relative to the repo root, "/"-separated
    deciding: tuple[str, ...] = field(default=())  # signals whose label equals the result
    suppressed: tuple[Suppressed, ...] = ()  # findings the allowlist accepts (never raise)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping for onbox/explain, ``onbox classify --json`` and the journal."""
        return {
            "label": self.label.name,
            "reasons": [r.to_json() for r in self.reasons],
            "policy": {"id": self.policy_id, "serial": self.policy_serial},
            "findings": [f.to_json() for f in self.findings],
            "repo": self.repo,
            "path": self.path,
            "deciding": list(self.deciding),
            "suppressed": [s.to_json() for s in self.suppressed],
        }


def fail_closed(scale_highest: Label, why: str, policy_id: str = "builtin-fail-closed") -> Decision:
    """The decision used whenever something cannot be resolved: highest label, on-box."""
    reason = Reason("fail-closed", scale_highest, why)
    return Decision(scale_highest, (reason,), policy_id, deciding=("fail-closed",))
