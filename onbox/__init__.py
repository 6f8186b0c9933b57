"""Onbox: a language server that labels code sensitivity and keeps sensitive completions on-box.

The import package is ``onbox``; its subpackages live in the top-level folders of the
repository (``server/`` is ``onbox.server``, ``inference/`` is ``onbox.inference``, and so on).
"""

from __future__ import annotations

__version__ = "0.1.0"
