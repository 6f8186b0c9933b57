"""``[[allowlist]]`` in the signed policy: accepted findings are shown, never raise a label."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onbox.classification.classifier import Classifier
from onbox.classification.policy import parse_policy
from onbox.classification.policy_model import PolicyError
from onbox.classification.report import build_report
from onbox.classification.report_html import render_html

SUITE = "X25519-HKDF-SHA256-ChaCha20Poly1305"
CODE = f'SUITE = "{SUITE}"\n'
DIGEST = hashlib.sha256(SUITE.encode()).hexdigest()
BASE = """\
[policy]
id = "allow"
default_label = "restricted"

[[repos]]
match = "github.com/acme/*"
label = "public"

[content]
secrets = "restricted"
pii = "restricted"
"""


def policy_with(entry: str) -> str:
    return BASE + "\n[[allowlist]]\n" + entry


@pytest.fixture(autouse=True)
def _git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(
        ["git", "-C", str(root), "remote", "add", "origin", "https://github.com/acme/app"],
        check=True,
    )
    for name in ("src/crypto.py", "tests/test_crypto.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(CODE, encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (f'sha256 = "{DIGEST}"\nexpires = 2099-01-01\n', "reason"),
        (f'sha256 = "{DIGEST}"\nreason = "suite name"\n', "expiry"),
        ('sha256 = "abc"\nreason = "x"\nexpires = 2099-01-01\n', "64 hex digits"),
        ('reason = "x"\nexpires = 2099-01-01\n', "at least one of"),
        ('path = "a/**"\nreason = "x"\nexpires = "soon"\n', "ISO 8601"),
        ('detector = "x"\nreason = "x"\nexpires = 2099-01-01\nlabel = "public"\n', "unknown key"),
    ],
)
def test_every_entry_says_what_why_and_until_when(entry: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(policy_with(entry).encode(), "policy.toml")


def test_the_x25519_false_positive_is_silenced_by_hash_and_still_shown(repo: Path) -> None:
    path = repo / "src" / "crypto.py"
    plain = Classifier(parse_policy(BASE.encode(), "policy.toml")).classify_path(path)
    assert plain.label.name == "restricted"  # the false positive of issue 13
    assert [f.type for f in plain.findings] == ["high-entropy-string"]
    text = policy_with(
        f'sha256 = "{DIGEST}"\nreason = "cipher suite name, not a key"\nexpires = 2099-01-01\n'
    )
    decision = Classifier(parse_policy(text.encode(), "policy.toml")).classify_path(path)
    assert decision.label.name == "public"
    assert decision.findings == ()
    (item,) = decision.suppressed
    assert item.finding.type == "high-entropy-string" and item.source == "policy.toml:13"
    assert item.reason == "cipher suite name, not a key" and item.expires == "2099-01-01"
    (said,) = [r for r in decision.reasons if r.signal == "allowlisted"]
    assert "suppressed" in said.message and said.source == "src/crypto.py:1"
    assert "allowlisted" not in decision.deciding
    assert decision.to_json()["suppressed"][0]["source"] == "policy.toml:13"
    assert SUITE not in json.dumps(decision.to_json())  # the value is never written out


def test_an_expired_entry_no_longer_suppresses(repo: Path) -> None:
    text = policy_with(f'sha256 = "{DIGEST}"\nreason = "was reviewed"\nexpires = 2020-01-01\n')
    decision = Classifier(parse_policy(text.encode(), "p.toml")).classify_path(
        repo / "src" / "crypto.py"
    )
    assert decision.label.name == "restricted" and decision.suppressed == ()


def test_detector_and_path_must_both_hold(repo: Path) -> None:
    text = policy_with(
        'detector = "high-entropy-string"\npath = "tests/**"\nreason = "fixtures"\n'
        "expires = 2099-01-01\n"
    )
    classifier = Classifier(parse_policy(text.encode(), "p.toml"))
    assert classifier.classify_path(repo / "tests" / "test_crypto.py").label.name == "public"
    assert classifier.classify_path(repo / "src" / "crypto.py").label.name == "restricted"
    other = policy_with('detector = "aws-access-key"\nreason = "x"\nexpires = 2099-01-01\n')
    decision = Classifier(parse_policy(other.encode(), "p.toml")).classify_path(
        repo / "tests" / "test_crypto.py"
    )
    assert decision.label.name == "restricted"


def test_a_link_into_an_allowlisted_directory_hides_nothing(repo: Path) -> None:
    text = policy_with('path = "tests/**"\nreason = "fixtures"\nexpires = 2099-01-01\n')
    link = repo / "tests" / "link.py"
    link.symlink_to(repo / "src" / "crypto.py")
    decision = Classifier(parse_policy(text.encode(), "p.toml")).classify_path(link)
    assert decision.label.name == "restricted"
    assert decision.findings and not decision.suppressed


def test_report_and_html_list_suppressed_findings(repo: Path) -> None:
    text = policy_with(f'sha256 = "{DIGEST}"\nreason = "suite name"\nexpires = 2099-01-01\n')
    report = build_report(repo, parse_policy(text.encode(), "policy.toml"))
    assert report.by_label["restricted"] == 0
    assert {f.path for f in report.suppressed} == {"src/crypto.py", "tests/test_crypto.py"}
    assert report.to_json()["suppressed"]["src/crypto.py"] == {
        "high-entropy-string (policy.toml:13)": 1
    }
    page = render_html(report)
    assert "Suppressed by the policy's allowlist (2 files)" in page
    assert "src/crypto.py" in page


def test_explain_and_classify_cli_show_suppressed(repo: Path, tmp_path: Path) -> None:
    text = policy_with(f'sha256 = "{DIGEST}"\nreason = "suite name"\nexpires = 2099-01-01\n')
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(text, encoding="utf-8")
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    target = str(repo / "src" / "crypto.py")
    cli = [sys.executable, "-m", "onbox.server.cli"]
    explain = subprocess.run(
        [*cli, "explain", "--policy", str(policy_file), target],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert explain.returncode == 0, explain.stderr
    assert "Suppressed by the policy's allowlist" in explain.stdout
    assert "suite name" in explain.stdout
    classify = subprocess.run(
        [*cli, "classify", "--policy", str(policy_file), "--json", target],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert classify.returncode == 0, classify.stderr
    out = json.loads(classify.stdout)
    assert out["label"] == "public" and out["suppressed"][0]["reason"] == "suite name"


def test_classify_report_text_lists_suppressed(repo: Path, tmp_path: Path) -> None:
    text = policy_with(f'sha256 = "{DIGEST}"\nreason = "suite name"\nexpires = 2099-01-01\n')
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(text, encoding="utf-8")
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    env["COLUMNS"] = "400"
    cli = [sys.executable, "-m", "onbox.server.cli", "classify", "--policy", str(policy_file)]
    done = subprocess.run(
        [*cli, "--report", str(repo)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "2 findings in 2 files suppressed by the policy's allowlist" in done.stdout
    assert "policy.toml:13) ×1" in done.stdout and "high-entropy-string" in done.stdout
