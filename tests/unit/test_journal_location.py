"""Where the journal lives: the signed machine policy's ``[audit] journal_dir`` when managed.

Real trust roots, real Ed25519-signed policy bundles applied through the policy store,
real journals opened by the server's wiring and the CLI.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from onbox import paths
from onbox.classification.bundle import make_bundle
from onbox.classification.policy import load_policy
from onbox.classification.policy_model import PolicyError
from onbox.classification.policy_store import PolicyStore
from onbox.classification.trust import TrustRoot
from onbox.server.cli import main
from onbox.server.journal_location import DEFAULT, POLICY, SETTING, expand, journal_location

POLICY_TOML = """\
[policy]
id = "acme"
labels = ["public", "restricted"]
default_label = "restricted"

[routes]
public = ["on-box"]
restricted = ["on-box"]

[audit]
{audit}
"""


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Isolated data, journal and trust root locations for this test (no trust root yet)."""
    monkeypatch.setenv("ONBOX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("ONBOX_JOURNAL_DIR", raising=False)
    monkeypatch.setenv("ONBOX_TRUST_ROOT", str(tmp_path / "trust-root.json"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def install_policy(
    audit: str, *, days: int = 30, issued: datetime | None = None, serial: int = 1
) -> PolicyStore:
    """Install a trust root and apply a policy signed under it; the store it went into."""
    key = Ed25519PrivateKey.generate()
    paths.trust_root_path().write_bytes(TrustRoot.create([key.public_key()], 1).to_bytes())
    when = issued or datetime.now(UTC)
    bundle = make_bundle(
        POLICY_TOML.format(audit=audit).encode(), serial, when + timedelta(days=days), [key], when
    )
    store = PolicyStore(clock=lambda: when)
    result = store.apply(bundle.to_bytes(), "test")
    assert result.applied, result.reason
    return PolicyStore()


def test_policy_journal_dir_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    for good in ("~/onbox/journal", "/var/lib/onbox/$USER", "${XDG_STATE_HOME}/onbox"):
        path.write_text(POLICY_TOML.format(audit=f'journal_dir = "{good}"'))
        assert load_policy(path).journal_dir == good
    path.write_text(POLICY_TOML.format(audit='journal_dir = "journal"'))
    with pytest.raises(PolicyError, match="must be an absolute path"):
        load_policy(path)
    path.write_text(POLICY_TOML.format(audit="journal_dir = 7"))
    with pytest.raises(PolicyError, match=r"audit\.journal_dir"):
        load_policy(path)


def test_expand_home_and_variables(machine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONBOX_TEST_STATE", str(machine / "state"))
    assert expand("~/j") == machine / "home" / "j"
    assert expand("${ONBOX_TEST_STATE}/onbox") == machine / "state" / "onbox"
    monkeypatch.delenv("ONBOX_TEST_UNSET", raising=False)
    with pytest.raises(ValueError, match="not set here: ONBOX_TEST_UNSET"):
        expand("$ONBOX_TEST_UNSET/journal")


def test_unmanaged_workstation_keeps_the_user_setting(machine: Path) -> None:
    assert journal_location(str(machine / "mine")) == journal_location(str(machine / "mine"))
    chosen = journal_location(str(machine / "mine"))
    assert (chosen.directory, chosen.source, chosen.note) == (machine / "mine", SETTING, None)
    default = journal_location(None)
    assert (default.directory, default.source) == (machine / "data" / "journal", DEFAULT)


def test_managed_workstation_takes_the_policy_dir_and_says_the_setting_is_ignored(
    machine: Path,
) -> None:
    store = install_policy('journal_dir = "~/audit/journal"')
    where = journal_location(str(machine / "elsewhere"), store)
    assert (where.directory, where.source) == (machine / "home" / "audit" / "journal", POLICY)
    assert where.note is not None
    assert "onbox.journal.dir" in where.note and "ignored on a managed workstation" in where.note
    assert str(machine / "home" / "audit" / "journal") in where.note
    assert journal_location(None, store).note is None  # nothing ignored, nothing to say


def test_managed_without_policy_dir_uses_the_default_not_the_setting(machine: Path) -> None:
    store = install_policy("store_encrypted_prompts = false")
    where = journal_location(str(machine / "elsewhere"), store)
    assert (where.directory, where.source) == (machine / "data" / "journal", DEFAULT)
    assert where.note is not None and "sets no [audit] journal_dir" in where.note


def test_policy_dir_that_cannot_be_expanded_fails_closed(
    machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ONBOX_TEST_UNSET", raising=False)
    store = install_policy('journal_dir = "$ONBOX_TEST_UNSET/journal"')
    where = journal_location(str(machine / "elsewhere"), store)
    assert where.directory is None and where.error is not None
    assert "ONBOX_TEST_UNSET" in where.error and "nothing leaves this machine" in where.error


def test_an_expired_policy_keeps_the_journal_where_it_was(machine: Path) -> None:
    store = install_policy(
        'journal_dir = "~/audit"', days=1, issued=datetime.now(UTC) - timedelta(days=3)
    )
    assert store.warning() is not None and "expired" in store.warning()  # type: ignore[operator]
    assert journal_location(None, store).directory == machine / "home" / "audit"


def test_onbox_serve_wiring_opens_the_policy_journal_and_reports_why(machine: Path) -> None:
    from onbox.server.settings import Settings
    from onbox.server.wiring import Wiring

    install_policy('journal_dir = "~/audit"')
    settings = Settings()
    settings.journal.dir = str(machine / "developer-choice")
    wiring = Wiring(settings)
    try:
        wiring.start()
        health = wiring.health("ready", None)["journal"]
        assert health["dir"] == str(machine / "home" / "audit") and health["source"] == POLICY
        assert health["writable"] and "ignored on a managed workstation" in health["note"]
        assert "ignored" in wiring.journal_summary()["note"]
    finally:
        wiring.stop()
    assert any(p.name.endswith(".jsonl") for p in (machine / "home" / "audit").iterdir())
    assert not (machine / "developer-choice").exists()


def test_cli_defaults_to_the_policy_journal(
    machine: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    install_policy('journal_dir = "~/audit"')
    assert main(["keys", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["journal"] == str(machine / "home" / "audit")
    assert main(["journal", "show", "--json"]) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert shown and shown[0]["kind"] == "segment-header"
    monkeypatch.delenv("ONBOX_TEST_UNSET", raising=False)
    install_policy('journal_dir = "$ONBOX_TEST_UNSET/j"', serial=2)
    assert main(["journal", "show"]) == 3
    assert "ONBOX_TEST_UNSET" in capsys.readouterr().err
