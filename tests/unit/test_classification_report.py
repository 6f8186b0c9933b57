"""The classification exercise (report, HTML map) and ``onbox classify`` as a real process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from onbox.classification.policy import parse_policy
from onbox.classification.report import build_report
from onbox.classification.report_html import label_colours, render_html, squarify

POLICY = """\
[policy]
id = "report-test"
default_label = "restricted"

[[repos]]
match = "github.com/acme/*"
label = "public"

[owners]
"@acme/core" = "internal"

[content]
secrets = "restricted"
pii = "restricted"
"""
TOKEN = 'TOKEN = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"\n'


def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
        GIT_CONFIG_NOSYSTEM="1",
        ONBOX_DATA_DIR=str(tmp_path / "data"),
        ONBOX_CONFIG_DIR=str(tmp_path / "cfg"),
        ONBOX_CACHE_DIR=str(tmp_path / "cache"),
        ONBOX_TRUST_ROOT=str(tmp_path / "trust.json"),
    )
    return e


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=env(tmp_path))
    subprocess.run(
        ["git", "-C", str(root), "remote", "add", "origin", "https://github.com/acme/shop.git"],
        check=True,
    )
    files = {
        "CODEOWNERS": "/core/ @acme/core\n",
        ".gitattributes": "vault/** onbox-label=restricted\n",
        "core/engine.py": "x = 1\n" * 50,
        "core/keys.py": "x = 1\n" + TOKEN,  # internal by owner, restricted by content
        "web/app.js": "let a = 1;\n" * 30,
        "web/leak.js": "const t = 'ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789';\n",
        "vault/secret.txt": "hush\n",
        "docs/marked.md": "<!-- onbox: internal -->\n# Doc\n",
        "bin/blob.bin": "\0\x01\x02" * 100,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (root / ".gitignore").write_text("ignored.log\n", encoding="utf-8")
    (root / "ignored.log").write_text("x\n", encoding="utf-8")
    return root


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onbox", "classify", *args],
        capture_output=True,
        text=True,
        env=env(tmp_path),
        timeout=120,
    )


def test_build_report_counts_and_candidates(repo: Path) -> None:
    policy = parse_policy(POLICY.encode(), "p.toml")
    seen: list[tuple[int, int]] = []
    report = build_report(repo, policy, lambda done, total: seen.append((done, total)))
    by_path = {f.path: f for f in report.files}
    assert "ignored.log" not in by_path and ".git/config" not in by_path
    assert seen[-1] == (len(report.files), len(report.files))
    assert by_path["core/engine.py"].label == "internal"
    assert by_path["core/keys.py"].label == "restricted"
    assert by_path["core/keys.py"].structural == "internal"
    assert by_path["vault/secret.txt"].label == "restricted"
    assert by_path["bin/blob.bin"].label == "public"
    candidates = [f.path for f in report.review_candidates]
    assert candidates == ["core/keys.py", "web/leak.js", "docs/marked.md"]
    assert "vault/secret.txt" not in candidates  # its path already says restricted
    assert report.by_label == {"public": 5, "internal": 2, "restricted": 3}
    assert sum(report.by_label.values()) == len(report.files)
    assert report.by_signal["content"] == 2 and report.by_signal["path-attribute"] == 1


def test_html_is_self_contained(repo: Path) -> None:
    policy = parse_policy(POLICY.encode(), "p.toml")
    report = build_report(repo, policy)
    page = render_html(report)
    assert "<svg" in page and "Content-Security-Policy" in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert "<link" not in page and "@import" not in page
    colours = label_colours(report.labels)
    rects = re.findall(r'fill="(#[0-9a-f]{6})" data-l="(\w+)"', page)
    assert len(rects) == len(report.files)
    assert all(colours[label] == fill for fill, label in rects)
    assert "core/keys.py" in page.split("Review candidates")[1]


def test_squarify_fills_the_box() -> None:
    sizes = [50.0, 30.0, 10.0, 5.0, 3.0, 2.0]
    rects = squarify(sizes, 0, 0, 200, 100)
    areas = [w * h for _, _, w, h in rects]
    assert sum(areas) == pytest.approx(20000)
    for size, area in zip(sizes, areas, strict=True):
        assert area == pytest.approx(size / 100 * 20000)
    assert all(
        x >= -1e-9 and y >= -1e-9 and x + w <= 200 + 1e-6 and y + h <= 100 + 1e-6
        for x, y, w, h in rects
    )


def test_cli_report_writes_html_and_json(tmp_path: Path, repo: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(POLICY, encoding="utf-8")
    out = tmp_path / "map.html"
    result = run_cli(
        tmp_path, "--report", str(repo), "--html", str(out), "--json", "--policy", str(policy)
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["repo"] == "github.com/acme/shop" and data["policy"] == "report-test"
    assert data["review_candidates"][0] == "core/keys.py"
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")


def test_cli_classify_paths_json_and_table(tmp_path: Path, repo: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(POLICY, encoding="utf-8")
    result = run_cli(tmp_path, str(repo / "core/keys.py"), "--json", "--policy", str(policy))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["label"] == "restricted" and data["path"] == "core/keys.py"
    assert {r["signal"] for r in data["reasons"]} == {"policy-repo", "codeowners", "content"}
    table = run_cli(tmp_path, str(repo / "core/engine.py"), "--policy", str(policy))
    assert table.returncode == 0 and "internal" in table.stdout and "CODEOWNERS:1" in table.stdout


def test_cli_invalid_policy_and_usage(tmp_path: Path, repo: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[policy]\nid = "b"\ndefault_label = "secret"\n', encoding="utf-8")
    result = run_cli(tmp_path, str(repo / "core/keys.py"), "--policy", str(bad))
    assert result.returncode == 2
    assert f"{bad}:3: [policy.default_label]" in result.stderr
    assert run_cli(tmp_path).returncode == 2
    assert run_cli(tmp_path, "--report", str(tmp_path / "nope")).returncode == 3
