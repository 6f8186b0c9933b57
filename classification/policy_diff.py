"""What changes if a policy replaces another: every file whose label moves, and why.

:func:`diff_policies` labels each file of each repository (the files ``onbox classify
--report`` labels: tracked and untracked, not ignored) under both policies, reading each
file once, and returns the files whose label differs with the deciding reasons on
either side. Repository files are parsed once and shared by both policies; a large tree
is split over forked worker processes.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onbox.classification.decision import Decision
from onbox.classification.policy_model import Policy
from onbox.classification.report import list_files, read_file
from onbox.classification.signals import SignalReader, evaluate

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LabelChange:
    """One file whose label differs between the two policies."""

    repo: str  # the repository root as given
    path: str  # relative to it
    old: str
    new: str
    old_why: tuple[str, ...]  # the deciding reasons under the old policy
    new_why: tuple[str, ...]
    old_rank: int = 0
    new_rank: int = 0

    @property
    def raised(self) -> bool:
        """Whether the new policy gives a higher label."""
        return self.new_rank > self.old_rank

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "repo": self.repo,
            "path": self.path,
            "old": self.old,
            "new": self.new,
            "raised": self.raised,
            "old_why": list(self.old_why),
            "new_why": list(self.new_why),
        }


@dataclass(frozen=True)
class PolicyDiff:
    """Every label change, and how many files were compared."""

    old_id: str
    new_id: str
    files: int
    changes: tuple[LabelChange, ...]
    errors: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "old": self.old_id,
            "new": self.new_id,
            "files": self.files,
            "changed": len(self.changes),
            "raised": sum(1 for c in self.changes if c.raised),
            "lowered": sum(1 for c in self.changes if not c.raised),
            "changes": [c.to_json() for c in self.changes],
            "errors": list(self.errors),
        }


def deciding_reasons(decision: Decision) -> tuple[str, ...]:
    """The reasons that give ``decision`` its label, as ``signal: message (source)``."""
    return tuple(
        f"{r.signal}: {r.message}" + (f" ({r.source})" if r.source else "")
        for r in decision.reasons
        if r.label == decision.label and r.signal != "allowlisted"
    )


def diff_policies(
    old: Policy,
    new: Policy,
    repos: Sequence[Path],
    progress: Progress | None = None,
    *,
    workers: int | None = None,
) -> PolicyDiff:
    """Label every file of ``repos`` under ``old`` and ``new``; return the differences.

    Large trees are split over ``workers`` forked processes (default: the CPUs this
    process may use); where ``fork`` is not available, or for a few hundred files, the
    work runs here.
    """
    todo = [
        (str(repo), str(repo.resolve()), name)
        for repo in repos
        for name in list_files(repo.resolve())
    ]
    if workers is None:
        affinity = getattr(os, "sched_getaffinity", None)
        workers = len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    chunks = [todo[i : i + CHUNK] for i in range(0, len(todo), CHUNK)]
    changes: list[LabelChange] = []
    errors: list[str] = []
    done = 0
    if workers > 1 and len(todo) >= 2 * CHUNK and "fork" in mp.get_all_start_methods():
        with mp.get_context("fork").Pool(workers, _start_worker, (old, new)) as pool:
            for found, failed, size in pool.imap(_worker_chunk, chunks):
                changes.extend(found)
                errors.extend(failed)
                done += size
                if progress is not None:
                    progress(done, len(todo))
    else:
        reader = SignalReader(
            batch=True, repeat=True
        )  # parsed repo files do not depend on the policy
        for chunk in chunks:
            found, failed, size = _compare(old, new, reader, chunk)
            changes.extend(found)
            errors.extend(failed)
            done += size
            if progress is not None:
                progress(done, len(todo))
    return PolicyDiff(old.id, new.id, len(todo), tuple(changes), tuple(errors))


CHUNK = 250
_WORKER: tuple[Policy, Policy, SignalReader] | None = None
Chunk = list[tuple[str, str, str]]


def _start_worker(old: Policy, new: Policy) -> None:
    global _WORKER
    _WORKER = (old, new, SignalReader(batch=True, repeat=True))


def _worker_chunk(chunk: Chunk) -> tuple[list[LabelChange], list[str], int]:
    assert _WORKER is not None
    return _compare(*_WORKER, chunk)


def _compare(
    old: Policy, new: Policy, reader: SignalReader, chunk: Chunk
) -> tuple[list[LabelChange], list[str], int]:
    """The label changes among ``chunk``'s (repo as given, resolved root, name) files."""
    changes: list[LabelChange] = []
    errors: list[str] = []
    for repo, root, name in chunk:
        path = Path(root) / name
        try:
            text, _ = read_file(path)
            before = evaluate(old, reader, path, text).decision
            after = evaluate(new, reader, path, text).decision
        except Exception as exc:  # one bad file must not stop the comparison
            logger.warning("cannot classify %s: %s", path, exc)
            errors.append(f"{repo}/{name}: {type(exc).__name__}: {exc}")
            continue
        if before.label.name != after.label.name:
            changes.append(
                LabelChange(
                    repo,
                    name,
                    before.label.name,
                    after.label.name,
                    deciding_reasons(before),
                    deciding_reasons(after),
                    before.label.rank,
                    after.label.rank,
                )
            )
    return changes, errors, len(chunk)
