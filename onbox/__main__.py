"""``python -m onbox`` runs the CLI."""

from __future__ import annotations

import sys

from onbox.server.cli import main

sys.exit(main())
