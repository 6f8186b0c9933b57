"""``onbox classify --report`` over several repositories: the organisation rollup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onbox.classification.policy import parse_policy
from onbox.classification.report import build_report, rollup
from onbox.classification.report_html import render_rollup_html

POLICY = """\
[policy]
id = "org"
default_label = "restricted"

[[repos]]
match = "github.com/acme/*"
label = "public"

[content]
secrets = "restricted"
pii = "restricted"
"""
TOKEN = 'TOKEN = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"\n'


def _repo(root: Path, remote: str | None, files: dict[str, str]) -> Path:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    if remote:
        subprocess.run(["git", "-C", str(root), "remote", "add", "origin", remote], check=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def org(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    web = _repo(tmp_path / "web", "https://github.com/acme/web", {"a.py": "x = 1\n", "k.py": TOKEN})
    lost = _repo(tmp_path / "lost", None, {"b.py": "y = 2\n"})
    return [web, lost]


def test_rollup_totals_and_rows(org: list[Path]) -> None:
    policy = parse_policy(POLICY.encode(), "p.toml")
    reports = [build_report(root, policy) for root in org]
    summary = rollup(reports)
    assert summary["repos"] == 2 and summary["files"] == 3
    assert summary["by_label"] == {"public": 1, "internal": 0, "restricted": 2}
    assert {r["repo"] for r in summary["by_repo"]} == {"github.com/acme/web", str(org[1].resolve())}
    assert summary["review_candidates"] == 1  # k.py: content above its structural label
    page = render_rollup_html(reports)
    assert "Classification of 2 repositories" in page and "k.py" in page


def test_manifest_on_the_command_line(org: list[Path], tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(POLICY, encoding="utf-8")
    manifest = tmp_path / "repos.txt"
    manifest.write_text("# the org\nweb\nlost  # no remote\n\n", encoding="utf-8")
    env = dict(os.environ, HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1", COLUMNS="200")
    cli = [sys.executable, "-m", "onbox.server.cli", "classify", "--policy", "policy.toml"]
    done = subprocess.run(
        [*cli, "--manifest", str(manifest), "--json", "--html", "org.html"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert len(out["repos"]) == 2 and out["rollup"]["files"] == 3
    assert "Classification of 2 repositories" in (tmp_path / "org.html").read_text()
    text = subprocess.run(
        [*cli, "--report", "web", "--report", "lost"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert text.returncode == 0, text.stderr
    assert "2 repositories, 3 files" in text.stdout and "github.com/acme/web" in text.stdout
