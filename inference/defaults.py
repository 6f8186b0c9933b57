"""Completion defaults, defined once.

The server's ``onbox.completion`` settings (:class:`onbox.server.settings.CompletionSection`)
default to these, and so do the request objects of the layers below it
(:class:`~onbox.inference.destination.CompletionRequest`,
:class:`~onbox.inference.routing.RequestSettings`,
:class:`~onbox.inference.local.ModelSettings`), which the server fills from its settings.
Editors send only what the user set, so every editor and the CLI complete alike;
``tests/unit/test_settings_docs.py`` checks docs/protocol.md against the server's settings.
"""

from __future__ import annotations

#: Most tokens one completion may generate.
MAX_TOKENS = 64
#: Greedy decoding: the same code gets the same suggestion, whichever editor asks.
TEMPERATURE = 0.0
#: Tokens of text before the cursor in the on-box model's prompt.
PREFIX_TOKENS = 1536
#: Tokens of text after the cursor in the on-box model's prompt.
SUFFIX_TOKENS = 256
