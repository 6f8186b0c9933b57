"""The language server, the CLI and the wiring between classification, inference and audit."""
