"""Subcommands of the ``onbox`` CLI, one module each, discovered by :mod:`onbox.server.cli`."""
