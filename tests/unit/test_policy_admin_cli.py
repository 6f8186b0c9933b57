"""Admin review tools (issue 13): cosign, diff, sign refusals, check warnings, CLI nits."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from onbox.classification.policy import parse_policy, policy_warnings
from onbox.server.commands.policy import EXAMPLE_POLICY
from tests.unit.test_policy_bundle_cli import Onbox

SIGN = ("policy", "sign", "p.toml", "--serial", "1", "--expires", "2099-01-01")


@pytest.fixture
def onbox(tmp_path: Path) -> Onbox:
    return Onbox(tmp_path)


@pytest.fixture
def two_of_three(onbox: Onbox) -> Onbox:
    for name in ("a1", "a2", "a3"):
        onbox("admin", "keygen", "--out", name)
    onbox("admin", "trust-root", "init", "--key", "a1.pub", "--key", "a2.pub", "--key",
          "a3.pub", "--threshold", "2", "--out", "root.json")  # fmt: skip
    onbox("admin", "trust-root", "install", "root.json")
    onbox("policy", "init", "--out", "p.toml")
    return onbox


def test_cosign_adds_one_signature_at_a_time(two_of_three: Onbox, tmp_path: Path) -> None:
    onbox = two_of_three
    out = onbox(*SIGN, "--key", "a1.key", "--out", "b.onbox-policy")
    assert "not valid yet: 1 of the 2 signatures required" in out
    onbox("policy", "verify", "b.onbox-policy", code=1)
    out = onbox("policy", "cosign", "b.onbox-policy", "--key", "a3.key")
    assert "added a signature" in out and "valid: signed by 2 of the 2 keys required" in out
    info = json.loads(onbox("policy", "verify", "b.onbox-policy", "--json"))
    assert info["valid"] and len(info["signers"]) == 2
    again = onbox("policy", "cosign", "b.onbox-policy", "--key", "a3.key")
    assert "re-signed" in again
    body = json.loads((tmp_path / "b.onbox-policy").read_text())
    assert len(body["signatures"]) == 2  # the same key twice is one signature


def test_signing_with_a_public_key_says_so(two_of_three: Onbox) -> None:
    out = two_of_three(*SIGN, "--key", "a1.pub", "--out", "x.onbox-policy", code=2)
    assert "a1.pub is a public key" in out and "cryptography.io" not in out
    out = two_of_three("policy", "cosign", "nothing", "--key", "a1.key", code=2)
    assert "nothing" in out


def test_sign_refuses_a_bundle_workstations_would_refuse(
    two_of_three: Onbox, tmp_path: Path
) -> None:
    padding = "# " + "x" * 98 + "\n"
    (tmp_path / "p.toml").write_text(EXAMPLE_POLICY + padding * 8000, encoding="utf-8")
    out = two_of_three(*SIGN, "--key", "a1.key", "--out", "big.onbox-policy", code=1)
    assert "refusing to sign" in out and "size cap" in out
    assert not (tmp_path / "big.onbox-policy").exists()


def test_pull_from_a_missing_directory_fails(onbox: Onbox, tmp_path: Path) -> None:
    out = onbox("policy", "pull", "--source", str(tmp_path / "nonexistent"), code=1)
    assert "no such directory" in out
    (tmp_path / "empty").mkdir()
    out = onbox("policy", "pull", "--source", str(tmp_path / "empty"), code=1)
    assert "no source held a policy bundle" in out


def test_status_forgets_a_rejection_once_a_later_bundle_applies(
    two_of_three: Onbox, tmp_path: Path
) -> None:
    onbox = two_of_three
    onbox("admin", "keygen", "--out", "stranger")
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir()
    good.mkdir()
    onbox(*SIGN, "--key", "stranger.key", "--out", "bad/p.onbox-policy")
    onbox("policy", "pull", "--source", str(bad), code=1)
    status = json.loads(onbox("policy", "status", "--json"))
    assert status["last_rejection"] is not None
    onbox(*SIGN, "--key", "a1.key", "--key", "a2.key", "--out", "good/p.onbox-policy")
    onbox("policy", "pull", "--source", str(good))
    status = json.loads(onbox("policy", "status", "--json"))
    assert status["last_rejection"] is None
    assert "last rejection" not in onbox("policy", "status")


def test_init_template_has_no_rule_that_never_changes_a_label() -> None:
    assert policy_warnings(parse_policy(EXAMPLE_POLICY.encode(), "example.toml")) == []


def test_check_warns_about_rules_that_can_never_change_a_label(
    onbox: Onbox, tmp_path: Path
) -> None:
    text = """\
[policy]
id = "w"
default_label = "restricted"

[[repos]]
match = "github.com/acme/*"
label = "internal"

[[repos]]
match = "github.com/acme/docs"
label = "public"

[tags]
team = "internal"
pay = "restricted"

[owners]
"@acme/all" = "internal"

[[allowlist]]
detector = "email"
reason = "old"
expires = 2020-01-01
"""
    (tmp_path / "w.toml").write_text(text, encoding="utf-8")
    warnings = json.loads(onbox("policy", "check", "w.toml", "--json"))["warnings"]
    assert len(warnings) == 4, warnings
    joined = "\n".join(warnings)
    assert "w.toml:14: [tags.team] is internal" in joined and "can never change" in joined
    assert "[owners.@acme/all]" in joined
    assert "w.toml:11: [repos.1.label] never applies" in joined
    assert "[allowlist.0] expired on 2020-01-01" in joined
    assert "pay" not in joined


OLD = """\
[policy]
id = "old"
default_label = "restricted"

[[repos]]
match = "github.com/acme/*"
label = "public"

[tags]
pay = "restricted"
"""


def _repo(root: Path, remote: str, files: dict[str, str]) -> None:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "remote", "add", "origin", remote], check=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


def test_diff_lists_changed_files_and_why(onbox: Onbox, tmp_path: Path) -> None:
    onbox.env.update(HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1")
    os.environ.setdefault("GIT_CONFIG_NOSYSTEM", "1")
    _repo(
        tmp_path / "web",
        "https://github.com/acme/web",
        {"a.py": "x = 1\n", "billing/b.py": "y = 2\n", "CODEOWNERS": "/billing/ @acme/pay\n"},
    )
    _repo(tmp_path / "docs", "https://github.com/acme/docs", {"guide.md": "# hi\n"})
    (tmp_path / "old.toml").write_text(OLD, encoding="utf-8")
    new = OLD.replace('id = "old"', 'id = "new"') + '\n[owners]\n"@acme/pay" = "restricted"\n'
    new = new.replace(
        '[[repos]]\nmatch = "github.com/acme/*"',
        '[[repos]]\nmatch = "github.com/acme/docs"\nlabel = "internal"\n\n'
        '[[repos]]\nmatch = "github.com/acme/*"',
    )
    (tmp_path / "new.toml").write_text(new, encoding="utf-8")
    args = ("policy", "diff", "old.toml", "new.toml", "--repo", "web", "--repo", "docs")
    report = json.loads(onbox(*args, "--json"))
    changed = {(c["repo"], c["path"]): c for c in report["changes"]}
    assert set(changed) == {("web", "billing/b.py"), ("docs", "guide.md")}
    billing = changed[("web", "billing/b.py")]
    assert (billing["old"], billing["new"], billing["raised"]) == ("public", "restricted", True)
    assert any("@acme/pay" in why and "CODEOWNERS:1" in why for why in billing["new_why"])
    assert any("github.com/acme/*" in why for why in billing["old_why"])
    assert report["files"] == 4 and report["changed"] == 2
    text = onbox(*args)
    assert "4 files: 2 change label under 'new'" in text
    assert "web/billing/b.py: public -> restricted" in text


def test_diff_in_worker_processes_matches_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onbox.classification import policy_diff

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    files = {f"m{i}.py": "x = 1\n" for i in range(12)}
    files["CODEOWNERS"] = "m1*.py @acme/pay\n"
    _repo(tmp_path / "web", "https://github.com/acme/web", files)
    old = parse_policy(OLD.encode(), "old.toml")
    new = parse_policy((OLD + '[owners]\n"@acme/pay" = "restricted"\n').encode(), "new.toml")
    monkeypatch.setattr(policy_diff, "CHUNK", 2)
    one = policy_diff.diff_policies(old, new, [tmp_path / "web"], workers=1)
    many = policy_diff.diff_policies(old, new, [tmp_path / "web"], workers=3)
    assert {c.path for c in one.changes} == {"m1.py", "m10.py", "m11.py"}
    assert one == many and one.files == 13
