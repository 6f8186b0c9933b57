"""Ordered sensitivity labels.

A policy defines its own ordered list of label names, lowest first; the default is
``public < internal < restricted``. A :class:`Label` carries its rank so that labels
compare by sensitivity, and :class:`LabelScale` turns names into labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DEFAULT_LABELS: tuple[str, ...] = ("public", "internal", "restricted")


@dataclass(frozen=True, order=True)
class Label:
    """A sensitivity label; higher ``rank`` is more sensitive."""

    rank: int
    name: str

    def __str__(self) -> str:
        return self.name


class UnknownLabelError(ValueError):
    """A label name that the policy's scale does not define."""


@dataclass(frozen=True)
class LabelScale:
    """The ordered labels of one policy, lowest first."""

    names: tuple[str, ...] = DEFAULT_LABELS

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("a label scale needs at least one label")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate label names in {list(self.names)}")

    def parse(self, name: str) -> Label:
        """Return the label called ``name`` or raise :class:`UnknownLabelError`."""
        try:
            return Label(self.names.index(name), name)
        except ValueError:
            raise UnknownLabelError(
                f"unknown label {name!r}; this policy defines {', '.join(self.names)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.names

    @property
    def lowest(self) -> Label:
        """The least sensitive label."""
        return Label(0, self.names[0])

    @property
    def highest(self) -> Label:
        """The most sensitive label (what fail-closed answers use)."""
        return Label(len(self.names) - 1, self.names[-1])

    def labels(self) -> Sequence[Label]:
        """All labels, lowest first."""
        return [Label(i, n) for i, n in enumerate(self.names)]

    @staticmethod
    def max(labels: Iterable[Label]) -> Label | None:
        """The most sensitive of ``labels``, or ``None`` for an empty iterable."""
        return max(labels, default=None)
