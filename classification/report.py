"""The classification exercise: label every file of a repository and summarise.

:func:`build_report` walks the files git knows (tracked plus untracked, not ignored),
evaluates every signal for each, and returns a :class:`Report` with counts by label and
by deciding signal, and the *review candidates*: files whose content (findings or
markers) puts them above the label their path, owners and tags give.
:func:`onbox.classification.report_html.render_html` draws it as a self-contained page.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onbox.classification.policy_model import Policy
from onbox.classification.repo import discover
from onbox.classification.signals import SignalReader, evaluate

logger = logging.getLogger(__name__)

MAX_SCAN_BYTES = 1_000_000
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class FileEntry:
    """One file's outcome in the report."""

    path: str
    size: int
    label: str
    rank: int
    structural: str  # label from policy, tags, attributes and owners alone
    deciding: tuple[str, ...]
    findings: dict[str, int] = field(default_factory=dict)  # finding type → count
    error: str | None = None
    #: findings the policy's allowlist accepts: "type (policy.toml:12)" → count
    suppressed: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "path": self.path,
            "size": self.size,
            "label": self.label,
            "structural": self.structural,
            "deciding": list(self.deciding),
            "findings": self.findings,
            "error": self.error,
            "suppressed": self.suppressed,
        }


@dataclass
class Report:
    """Labels of every file in one repository."""

    root: str
    repo: str | None
    policy_id: str
    labels: tuple[str, ...]
    files: list[FileEntry]
    seconds: float = 0.0

    @property
    def by_label(self) -> dict[str, int]:
        """File count per label, every label present (lowest first)."""
        counts = Counter(f.label for f in self.files)
        return {name: counts.get(name, 0) for name in self.labels}

    @property
    def by_signal(self) -> dict[str, int]:
        """File count per deciding signal (a file counts once for each deciding signal)."""
        counts: Counter[str] = Counter()
        for entry in self.files:
            counts.update(entry.deciding)
        return dict(counts.most_common())

    @property
    def review_candidates(self) -> list[FileEntry]:
        """Files whose content raises them above their structural label, worst first."""
        rank = {name: i for i, name in enumerate(self.labels)}
        raised = [f for f in self.files if f.rank > rank.get(f.structural, 0)]
        return sorted(raised, key=lambda f: (-f.rank, -sum(f.findings.values()), f.path))

    @property
    def suppressed(self) -> list[FileEntry]:
        """Files with findings the allowlist accepts: shown, never hidden."""
        return [f for f in self.files if f.suppressed]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary with every file."""
        return {
            "root": self.root,
            "repo": self.repo,
            "policy": self.policy_id,
            "labels": list(self.labels),
            "seconds": round(self.seconds, 3),
            "by_label": self.by_label,
            "by_signal": self.by_signal,
            "review_candidates": [f.path for f in self.review_candidates],
            "suppressed": {f.path: f.suppressed for f in self.suppressed},
            "files": [f.to_json() for f in self.files],
        }


def list_files(root: Path) -> list[str]:
    """Repo-relative paths of the files git knows about (or every file outside git)."""
    if discover(root) is not None:
        try:
            out = subprocess.run(
                [
                    "git",
                    "-C",
                    str(root),
                    "ls-files",
                    "-z",
                    "--cached",
                    "--others",
                    "--exclude-standard",
                ],
                capture_output=True,
                check=True,
                timeout=120,
            ).stdout
            names = sorted({n for n in out.decode("utf-8", "surrogateescape").split("\0") if n})
            return [n for n in names if os.path.isfile(root / n) or os.path.islink(root / n)]
        except (OSError, subprocess.SubprocessError) as exc:
            logger.warning("git ls-files failed in %s (%s); walking the tree instead", root, exc)
    found = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            found.append(Path(directory, name).relative_to(root).as_posix())
    return sorted(found)


def read_file(path: Path) -> tuple[str, int]:
    """(text to classify, size): the first MAX_SCAN_BYTES, "" for a binary file."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_SCAN_BYTES)
    size = os.path.getsize(path)
    if b"\0" in data[:8192]:
        return "", size  # binary: structural signals only
    return data.decode("utf-8", "replace"), size


def build_report(root: Path, policy: Policy, progress: Progress | None = None) -> Report:
    """Classify every file under ``root``; ``progress(done, total)`` is called as it goes."""
    import time

    started = time.perf_counter()
    root = root.resolve()
    repo = discover(root)
    names = list_files(root)
    reader = SignalReader(batch=True)
    entries: list[FileEntry] = []
    for index, name in enumerate(names):
        path = root / name
        try:
            text, size = read_file(path)
            evaluation = evaluate(policy, reader, path, text)
            decision = evaluation.decision
            findings = Counter(f.type for f in decision.findings)
            suppressed = Counter(f"{s.finding.type} ({s.source})" for s in decision.suppressed)
            structural = evaluation.structural or decision.label
            entries.append(
                FileEntry(
                    name,
                    size,
                    decision.label.name,
                    decision.label.rank,
                    structural.name,
                    decision.deciding,
                    dict(findings),
                    suppressed=dict(suppressed),
                )
            )
        except Exception as exc:  # one bad file must not stop the exercise
            logger.warning("cannot classify %s: %s", name, exc)
            default = policy.scale.highest  # fail closed, as the classifier does
            entries.append(
                FileEntry(
                    name,
                    0,
                    default.name,
                    default.rank,
                    default.name,
                    ("fail-closed",),
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
        if progress is not None:
            progress(index + 1, len(names))
    return Report(
        str(root),
        repo.identity if repo else None,
        policy.id,
        policy.scale.names,
        entries,
        time.perf_counter() - started,
    )


def rollup(reports: list[Report]) -> dict[str, Any]:
    """An organisation's view of several reports: totals and one row per repository."""
    labels = reports[0].labels if reports else ()
    totals: Counter[str] = Counter()
    signals: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    for report in reports:
        totals.update(report.by_label)
        signals.update(report.by_signal)
        rows.append(
            {
                "repo": report.repo or report.root,
                "root": report.root,
                "files": len(report.files),
                "by_label": report.by_label,
                "review_candidates": len(report.review_candidates),
                "suppressed_files": len(report.suppressed),
                "errors": sum(1 for f in report.files if f.error),
            }
        )
    worst_first = list(reversed(labels))  # the repositories with most sensitive files first
    rows.sort(key=lambda row: [-row["by_label"].get(name, 0) for name in worst_first])
    return {
        "labels": list(labels),
        "repos": len(reports),
        "files": sum(len(r.files) for r in reports),
        "by_label": {name: totals.get(name, 0) for name in labels},
        "by_signal": dict(signals.most_common()),
        "review_candidates": sum(r["review_candidates"] for r in rows),
        "suppressed_files": sum(r["suppressed_files"] for r in rows),
        "by_repo": rows,
    }
