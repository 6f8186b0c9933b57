"""What the CLI prints is true: data is printed as it is, messages name the right things.

Rich reads ``[...]`` as markup, so a file named ``[bold]x.py`` or a policy pattern
``github.com/[a]cme/pay*`` lost characters before they were escaped. Each test runs the
real ``onbox`` command in a private data directory; none needs the model.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onbox.audit import open_journal
from onbox.classification.policy import load_policy
from onbox.server.cli import ConciseFormatter, configure_logging
from tests.support.policies import PolicyBuilder
from tests.support.repos import git

PATTERN = "github.com/[a]cme/pay*"
FILE_NAME = "[bold]x.py"

POLICY = PolicyBuilder("markup-[test]").repo(PATTERN, "internal").toml()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ONBOX_DATA_DIR": str(tmp_path / "data"),
        "ONBOX_CONFIG_DIR": str(tmp_path / "config"),
        "ONBOX_TRUST_ROOT": str(tmp_path / "no-trust-root.json"),
        "COLUMNS": "250",  # one table row per line, so the text can be searched
    }


def onbox(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onbox", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_classify_prints_file_names_and_patterns_as_they_are(
    tmp_path: Path, env: dict[str, str]
) -> None:
    repo = tmp_path / "payments"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "remote", "add", "origin", "git@github.com:acme/payments.git")
    (repo / FILE_NAME).write_text("x = 1\n")
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)

    run = onbox(env, "classify", "--policy", str(policy), str(repo / FILE_NAME))
    assert run.returncode == 0, run.stderr
    assert f"{repo / FILE_NAME}: internal" in run.stdout
    assert PATTERN in run.stdout and "markup-[test]" in run.stdout

    report = onbox(env, "classify", "--policy", str(policy), "--report", str(repo))
    assert report.returncode == 0, report.stderr
    assert "markup-[test]" in report.stdout


def test_journal_show_prints_bodies_as_they_are(tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "data"
    with open_journal(data / "journal", device_key_dir=data / "keys") as journal:
        journal.append("acceptance", {"uri": f"file:///repo/{FILE_NAME}", "how": "whole"})
    run = onbox(env, "journal", "show", "--dir", str(data / "journal"))
    assert run.returncode == 0, run.stderr
    assert FILE_NAME in run.stdout


def test_new_recipient_names_the_policy_key_that_takes_it(
    tmp_path: Path, env: dict[str, str]
) -> None:
    out = tmp_path / "[team]recipient.key"
    run = onbox(env, "keys", "new-recipient", "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert str(out) in run.stdout and out.exists()
    line = next(x for x in run.stdout.splitlines() if "security_team_key" in x)
    assignment = line[line.index("security_team_key") :]
    assert "[policy] security_team_key = " in line
    # Pasted as printed into the [policy] table, the key is accepted.
    policy = tmp_path / "policy.toml"
    policy.write_text(
        POLICY.replace(
            'default_label = "restricted"\n', f'default_label = "restricted"\n{assignment}\n', 1
        )
    )
    assert load_policy(policy).security_team_key == assignment.split('"')[1]

    again = onbox(env, "keys", "new-recipient", "--out", str(out))
    assert again.returncode == 2 and str(out) in again.stderr


def test_doctor_fails_on_a_managed_machine_without_trust_root(
    tmp_path: Path, env: dict[str, str]
) -> None:
    unmanaged = onbox(env, "doctor", "--no-load", "--json")
    assert unmanaged.returncode == 0, unmanaged.stderr
    assert json.loads(unmanaged.stdout)["problems"] == []

    config = tmp_path / "config"
    config.mkdir()
    (config / "settings.toml").write_text(f'[policy]\nsources = ["{tmp_path / "drop"}"]\n')
    managed = onbox(env, "doctor", "--no-load", "--json")
    assert managed.returncode == 1
    (problem,) = json.loads(managed.stdout)["problems"]
    assert problem.startswith("trust root: missing") and "policy sources" in problem
    table = onbox(env, "doctor", "--no-load")
    assert table.returncode == 1 and "policy sources are" in table.stdout
    assert "exit codes:" in onbox(env, "doctor", "--help").stdout


def test_doctor_prints_the_last_rejection_for_people(tmp_path: Path, env: dict[str, str]) -> None:
    store = tmp_path / "data" / "policy"
    store.mkdir(parents=True)
    rejection = {
        "subject": "policy",
        "reason": "signature by an unknown key",
        "origin": "/srv/drop",
        "serial": 7,
        "bundle_sha256": "ab" * 32,
        "at": "2026-11-30T10:00:00Z",
    }
    (store / "state.json").write_text(json.dumps({"last_rejection": rejection}))
    run = onbox(env, "doctor", "--no-load")
    assert run.returncode == 0, run.stderr
    assert "last rejected: serial 7 from /srv/drop at 2026-11-30T10:00:00Z:" in run.stdout
    assert "signature by an unknown key" in run.stdout
    assert "{'subject'" not in run.stdout and "bundle_sha256" not in run.stdout


def test_cli_warnings_are_one_concise_line(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        configure_logging(0, server=False)
        assert isinstance(root.handlers[0].formatter, ConciseFormatter)
        try:
            raise OSError("disk full")
        except OSError:
            logging.getLogger("onbox.classification.policy_store").warning(
                "rejected policy bundle from %s: %s", "/srv/drop", "bad signature", exc_info=True
            )
        assert capsys.readouterr().err == (
            "onbox: warning: rejected policy bundle from /srv/drop: bad signature\n"
        )
        configure_logging(0, server=True)  # the server's log keeps time, level and logger
        logging.getLogger("onbox.server.lsp").warning("served")
        assert capsys.readouterr().err.endswith(" WARNING onbox.server.lsp: served\n")
    finally:
        root.handlers[:] = before
        root.setLevel(level)
