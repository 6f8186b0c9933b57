"""Where Onbox keeps its files on a workstation.

Every location can be overridden by an environment variable so that tests, CI and
installs without root can run side by side without touching the real user's files.

| what            | default (platformdirs)              | override                 |
| --------------- | ----------------------------------- | ------------------------ |
| data (journal, device keys, last-good policy) | ``user_data_dir("onbox")`` | ``ONBOX_DATA_DIR`` |
| cache (model, policy git clones)               | ``user_cache_dir("onbox")`` | ``ONBOX_CACHE_DIR`` |
| trust root (admin public keys, threshold)      | ``site_config_dir("onbox")/trust-root.json`` | ``ONBOX_TRUST_ROOT`` (a file path) |
| local settings                                 | ``user_config_dir("onbox")`` | ``ONBOX_CONFIG_DIR`` |
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

_APP = "onbox"


def data_dir() -> Path:
    """Directory for the journal, device keys and the last-good policy."""
    override = os.environ.get("ONBOX_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(_APP))


def cache_dir() -> Path:
    """Directory for the assembled default model and policy source clones."""
    override = os.environ.get("ONBOX_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir(_APP))


def config_dir() -> Path:
    """Directory for the developer's local settings."""
    override = os.environ.get("ONBOX_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir(_APP))


def journal_dir() -> Path:
    """Directory holding the audit journal segments."""
    override = os.environ.get("ONBOX_JOURNAL_DIR")
    return Path(override) if override else data_dir() / "journal"


def trust_root_path() -> Path:
    """File holding the admin trust root (public keys and signing threshold)."""
    override = os.environ.get("ONBOX_TRUST_ROOT")
    if override:
        return Path(override)
    return Path(platformdirs.site_config_dir(_APP)) / "trust-root.json"
