"""The :class:`Classifier`: one call answers "how sensitive is this document?".

It never raises. Anything it cannot resolve (untitled buffer, non-file URI, unreadable
file, an exception anywhere) yields the policy's highest label with a reason that says
why; an expired policy (of any origin: a local file or a signed bundle) yields the
built-in fail-closed decision — the highest label, on-box only. Decisions are cached per
``(uri, version)`` and re-used only while the text, the policy object and every repo
file the decision consulted (attributes, CODEOWNERS, ``.onbox.toml``, ``.gitignore``
files, git config) are unchanged by (mtime, size, inode), so a warm decision costs a
handful of ``stat`` calls.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from onbox.classification.decision import Decision, Reason, fail_closed
from onbox.classification.policy import BUILTIN_POLICY_ID
from onbox.classification.policy_model import Policy
from onbox.classification.repo import fingerprint
from onbox.classification.signals import Evaluation, SignalReader, evaluate

logger = logging.getLogger(__name__)

MAX_CACHED_DECISIONS = 4096


@dataclass
class _Cached:
    policy: Policy
    text: str
    evaluation: Evaluation


def closed_decision(policy: Policy, why: str) -> Decision:
    """The policy's highest label, with ``why`` as the only reason (fail closed)."""
    reason = Reason("fail-closed", policy.scale.highest, why)
    return Decision(
        policy.scale.highest, (reason,), policy.id, policy.serial, deciding=("fail-closed",)
    )


def uri_to_path(uri: str) -> Path | None:
    """The absolute local path of a ``file:`` URI, or ``None`` for other schemes."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
        return None
    path = Path(url2pathname(unquote(parts.path)))
    return path if path.is_absolute() else None


class Classifier:
    """Labels documents under one policy; safe to call from several threads."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int | None, str | None], _Cached] = {}
        self._reader = SignalReader()

    @property
    def policy(self) -> Policy:
        """The policy in force."""
        return self._policy

    def set_policy(self, policy: Policy) -> None:
        """Replace the policy and drop every cached decision."""
        with self._lock:
            self._policy = policy
            self._cache.clear()
        self._reader.clear()

    def invalidate(self) -> None:
        """Drop every cached decision and repo reading (a signal file changed)."""
        with self._lock:
            self._cache.clear()
        self._reader.clear()

    def classify_path(self, path: Path) -> Decision:
        """Read the file at ``path`` and classify it (never raises)."""
        absolute = Path(os.path.abspath(path))
        return self.classify(absolute.as_uri(), None)

    def classify(
        self, uri: str, text: str | None, version: int | None = None, language: str | None = None
    ) -> Decision:
        """The decision for document ``uri`` with content ``text`` (read from disk if None).

        ``language`` is the editor's ``languageId``; when it names no known grammar the
        file extension decides which grammar the content scanner uses.
        """
        policy = self._policy
        try:
            return self._classify(policy, uri, text, version, language)
        except Exception as exc:  # fail closed, whatever happened
            logger.exception("classifier error for %s", uri)
            return closed_decision(
                policy,
                f"classifier error ({type(exc).__name__}: {exc}): the highest label applies; "
                "please report this with `onbox classify --json`",
            )

    def _classify(
        self,
        policy: Policy,
        uri: str,
        text: str | None,
        version: int | None,
        language: str | None = None,
    ) -> Decision:
        if policy.expired(datetime.now(UTC)):
            # Nothing of an expired policy is trusted, its default label and its repo
            # rules least of all: the built-in fail-closed policy decides.
            return fail_closed(
                policy.scale.highest,
                f"policy {policy.id!r} (serial {policy.serial}) expired at {policy.expires}: "
                f"the built-in fail-closed policy applies (every file {policy.scale.highest.name},"
                " on-box only); ask your admin for a new policy",
                BUILTIN_POLICY_ID,
            )
        path = uri_to_path(uri)
        if path is None:
            scheme = urlsplit(uri).scheme or "none"
            what = "an untitled buffer" if scheme == "untitled" else f"not a local file ({scheme}:)"
            return closed_decision(policy, f"{what}: the highest label applies")
        if text is None:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                return closed_decision(
                    policy,
                    f"cannot read {path} ({exc.strerror or exc}): the highest label applies",
                )
        key = (uri, version, language)
        with self._lock:
            cached = self._cache.get(key)
        if (
            cached is not None
            and cached.policy is policy
            and cached.text == text
            and all(fingerprint(p) == fp for p, fp in cached.evaluation.watched)
        ):
            return cached.evaluation.decision
        evaluation = self._evaluate(policy, path, text, language)
        with self._lock:
            if len(self._cache) >= MAX_CACHED_DECISIONS:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = _Cached(policy, text, evaluation)
        return evaluation.decision

    def _evaluate(self, policy: Policy, path: Path, text: str, language: str | None) -> Evaluation:
        evaluation = evaluate(policy, self._reader, path, text, language)
        real = Path(os.path.realpath(path))
        if real == path:
            return evaluation
        # A symlink (or a linked directory): the target's location counts too.
        target = evaluate(policy, self._reader, real, text, language)
        decision = evaluation.decision
        # The same text: its content counts once, unless an allowlist path entry accepted
        # a finding at the link's path only (a link into an allowlisted directory must
        # not hide what the target's own path would report).
        counted = {(f.start, f.end, f.type) for f in target.decision.findings}
        escaped = tuple(
            s
            for s in decision.suppressed
            if (s.finding.start, s.finding.end, s.finding.type) in counted
        )
        skip = {"marker", "allowlisted"} | (set() if escaped else {"content"})
        extra = tuple(
            replace(r, message=f"symlink target {real}: {r.message}")
            for r in target.decision.reasons
            if r.signal not in skip
        )
        label = max(decision.label, target.decision.label)
        reasons = decision.reasons + extra
        deciding = tuple(
            dict.fromkeys(
                r.signal for r in reasons if r.label == label and r.signal != "allowlisted"
            )
        )
        structural = max(x for x in (evaluation.structural, target.structural) if x is not None)
        merged = replace(
            decision,
            label=label,
            reasons=reasons,
            deciding=deciding,
            findings=tuple(dict.fromkeys(decision.findings + tuple(s.finding for s in escaped))),
            suppressed=tuple(s for s in decision.suppressed if s not in escaped),
        )
        return Evaluation(merged, evaluation.watched + target.watched, evaluation.base, structural)
