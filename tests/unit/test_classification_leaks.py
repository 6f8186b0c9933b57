"""Classification-side causes of the leaks in issue 11, each on real git repositories.

Every test here failed before its fix: a second URL of ``origin`` lowered the label, a
marker after a long first line was missed, the editor's ``languageId`` and a shebang did
not pick the grammar, an expired policy fell back to its own default label, tags were
case-sensitive, gitignored files inherited the repository's label and a directory named
``.gitattributes`` was a classifier error.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from onbox.classification import languages
from onbox.classification.classifier import Classifier
from onbox.classification.decision import Decision
from onbox.classification.markers import find_marker
from onbox.classification.policy import Policy, PolicyError, parse_policy, policy_warnings
from onbox.classification.repo import discover, normalise_remote
from tests.support.repos import git

POLICY_TEXT = """\
[policy]
id = "leaks"
default_label = "internal"

[[repos]]
match = "github.com/acme/payments"
label = "restricted"

[[repos]]
match = "github.com/acme/*"
label = "public"

[tags]
pci = "restricted"

[content]
secrets = "restricted"
pii = "restricted"

[[detectors]]
name = "stripe-sdk"
kind = "tree-sitter"
language = "python"
query = '(import_statement name: (dotted_name) @m (#eq? @m "stripe"))'
label = "restricted"
"""
PAYMENTS = "git@github.com:acme/payments.git"
MIRROR = "git@github.com:acme/open-payments-mirror.git"


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY_TEXT.encode(), "policy.toml")


@pytest.fixture(autouse=True)
def _git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    for name in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{name}_NAME", "t")
        monkeypatch.setenv(f"GIT_{name}_EMAIL", "t@example.com")
    (tmp_path / "home").mkdir()


def make_repo(root: Path, files: dict[str, str], *, origin: str | None = None) -> Path:
    """A committed repository at ``root`` holding ``files``."""
    root.mkdir(parents=True)
    git(root, "init", "-q")
    if origin:
        git(root, "remote", "add", "origin", origin)
    write(root, files)
    if files:
        git(root, "add", "-A")
        git(root, "commit", "-qm", "init")
    return root


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def bump(path: Path) -> None:
    """Make a rewrite visible to stat even on coarse-mtime filesystems."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def messages(decision: Decision) -> str:
    return "\n".join(r.message for r in decision.reasons)


# -- 1. every URL of every remote counts ---------------------------------------------


@pytest.mark.parametrize("first, added", [(PAYMENTS, MIRROR), (MIRROR, PAYMENTS)])
def test_second_url_of_origin_cannot_lower_the_label(
    tmp_path: Path, policy: Policy, first: str, added: str
) -> None:
    root = make_repo(tmp_path / "r", {"charge.py": "x = 1\n"}, origin=first)
    git(root, "remote", "set-url", "--add", "origin", added)
    decision = Classifier(policy).classify_path(root / "charge.py")
    assert decision.label.name == "restricted"
    # The identity shown is what git fetches from: `git remote get-url origin`.
    assert decision.repo == normalise_remote(git(root, "remote", "get-url", "origin"))
    assert decision.repo == normalise_remote(first)
    disagreement = [r for r in decision.reasons if "disagree" in r.message]
    assert len(disagreement) == 1 and disagreement[0].label.name == "restricted"
    assert "github.com/acme/payments is restricted" in disagreement[0].message
    assert "github.com/acme/open-payments-mirror is public" in disagreement[0].message


def test_pushurl_and_every_remote_count(tmp_path: Path, policy: Policy) -> None:
    root = make_repo(tmp_path / "r", {"a.py": "x = 1\n"}, origin=MIRROR)
    classifier = Classifier(policy)
    assert classifier.classify_path(root / "a.py").label.name == "public"
    git(root, "remote", "set-url", "--push", "origin", PAYMENTS)
    assert classifier.classify_path(root / "a.py").label.name == "restricted"  # config watched
    other = make_repo(tmp_path / "o", {"a.py": "x = 1\n"}, origin=MIRROR)
    git(other, "remote", "add", "upstream", "https://github.com/acme/payments")
    decision = Classifier(policy).classify_path(other / "a.py")
    assert decision.label.name == "restricted"
    assert decision.repo == "github.com/acme/open-payments-mirror"


def test_included_config_is_read_and_watched(tmp_path: Path, policy: Policy) -> None:
    root = make_repo(tmp_path / "r", {"a.py": "x = 1\n"}, origin=MIRROR)
    extra = tmp_path / "extra.config"
    extra.write_text("[core]\n\tbare = false\n", encoding="utf-8")
    git(root, "config", "include.path", "../../extra.config")  # relative to .git/config
    classifier = Classifier(policy)
    assert classifier.classify_path(root / "a.py").label.name == "public"
    extra.write_text(f'[remote "origin"]\n\turl = {PAYMENTS}\n', encoding="utf-8")
    bump(extra)
    # git agrees that the included URL is one of origin's...
    assert normalise_remote(PAYMENTS) in {
        normalise_remote(u) for u in git(root, "remote", "get-url", "--all", "origin").split()
    }
    # ...and so does the classifier, without a restart.
    assert classifier.classify_path(root / "a.py").label.name == "restricted"


def test_insteadof_rewrites_count_like_git(tmp_path: Path, policy: Policy) -> None:
    root = make_repo(
        tmp_path / "r", {"a.py": "x = 1\n"}, origin="https://github.com/acme/open-payments-mirror"
    )
    # The rewrite lives in the global config, where such rules usually are.
    git(root, "config", "--global", "url.git@github.com:acme/payments.insteadOf",
        "https://github.com/acme/open-payments-mirror")  # fmt: skip
    fetched = git(root, "remote", "get-url", "origin")
    assert normalise_remote(fetched) == "github.com/acme/payments"  # git fetches payments
    decision = Classifier(policy).classify_path(root / "a.py")
    assert decision.label.name == "restricted"
    assert decision.repo == "github.com/acme/payments"


def test_remote_entries_parse_like_git(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {}, origin=PAYMENTS)
    git(root, "remote", "set-url", "--add", "origin", "https://u:secret@github.com/acme/x.git")
    git(root, "remote", "add", "local", str(tmp_path / "elsewhere"))
    repo = discover(root)
    assert repo is not None
    assert repo.identity == "github.com/acme/payments"
    assert set(repo.identities) == {"github.com/acme/payments", "github.com/acme/x", None}
    assert all("secret" not in r.url for r in repo.remotes)
    assert str(root / ".git" / "config") in repo.config_files


# -- 2. markers in the first 5 lines, whatever their length ----------------------------


def test_marker_after_a_long_first_line(tmp_path: Path, policy: Policy) -> None:
    long_line = "__all__ = [" + ", ".join(f'"name_{i}"' for i in range(500)) + "]"
    assert len(long_line) > 4500
    text = f"{long_line}\n# onbox: restricted\nx = 1\n"
    marker = find_marker(text)
    assert marker is not None and (marker.label, marker.line) == ("restricted", 2)
    root = make_repo(tmp_path / "r", {"pay.py": text}, origin=MIRROR)
    decision = Classifier(policy).classify_path(root / "pay.py")
    assert decision.label.name == "restricted" and "marker" in decision.deciding


def test_marker_only_in_the_first_five_lines() -> None:
    assert find_marker("a\n" * 4 + "# onbox: restricted\n") is not None
    assert find_marker("a\n" * 5 + "# onbox: restricted\n") is None
    assert find_marker(("x" * 100_000 + "\n") * 5 + "# onbox: restricted\n") is None
    assert find_marker("x" * 10_000 + "  // onbox: internal") is not None


# -- 3. languageId, then extension, then shebang decide the grammar ---------------------


@pytest.mark.parametrize(
    "path, language_id, text, expected",
    [
        ("bin/charge", "python", "", "python"),
        ("a.js", "python", "", "python"),  # the editor knows better than the extension
        ("a.js", "shellscript", "", "javascript"),
        ("a.tsx", None, "", "tsx"),
        ("bin/charge", None, "#!/usr/bin/env python3\nimport stripe\n", "python"),
        ("bin/charge", None, "#!/usr/bin/python3.11 -u\n", "python"),
        ("bin/charge", None, "#!/usr/bin/env -S python3 -u\n", "python"),
        ("bin/run", None, "#!/usr/bin/node\n", "javascript"),
        ("bin/run", None, "#!/usr/bin/env deno run\n", "typescript"),
        ("bin/run", None, "#!/bin/bash\n", None),
        ("bin/run", None, "import stripe\n", None),
        (None, None, "#!/usr/bin/env python3\n", "python"),
    ],
)
def test_language_for(
    path: str | None, language_id: str | None, text: str, expected: str | None
) -> None:
    assert languages.language_for(path, language_id, text) == expected


def test_language_id_picks_the_grammar_for_detectors(tmp_path: Path, policy: Policy) -> None:
    script = "import os\nimport stripe\n\nstripe.Charge.create(amount=1)\n"
    root = make_repo(tmp_path / "r", {"bin/charge-customers": script}, origin=MIRROR)
    uri = (root / "bin" / "charge-customers").as_uri()
    classifier = Classifier(policy)
    plain = classifier.classify(uri, script, 1)
    assert plain.label.name == "public"  # no extension, no languageId, no shebang
    decision = classifier.classify(uri, script, 1, language="python")
    assert decision.label.name == "restricted"
    assert [f.type for f in decision.findings] == ["stripe-sdk"]


def test_shebang_picks_the_grammar_without_language_id(tmp_path: Path, policy: Policy) -> None:
    script = "#!/usr/bin/env python3\nimport stripe\n"
    root = make_repo(tmp_path / "r", {"bin/charge": script}, origin=MIRROR)
    decision = Classifier(policy).classify_path(root / "bin" / "charge")  # as the CLI does
    assert decision.label.name == "restricted"
    assert [f.type for f in decision.findings] == ["stripe-sdk"]


# -- 4. expiry and errors fail closed to the highest label ----------------------------


@pytest.mark.parametrize("serial", [0, 7], ids=["local-file", "signed"])
def test_expired_policy_of_any_origin_is_the_builtin_decision(
    tmp_path: Path, policy: Policy, serial: int
) -> None:
    root = make_repo(tmp_path / "r", {"a.py": "x = 1\n"}, origin=MIRROR)
    assert policy.default_label.name == "internal"
    expired = dataclasses.replace(
        policy, serial=serial, expires=datetime.now(UTC) - timedelta(minutes=1)
    )
    decision = Classifier(expired).classify_path(root / "a.py")
    assert decision.label.name == "restricted"
    assert decision.policy_id == "builtin-fail-closed"
    assert decision.deciding == ("fail-closed",)
    assert "expired" in decision.reasons[0].message and "on-box only" in decision.reasons[0].message


def test_errors_and_untitled_buffers_are_highest(
    tmp_path: Path, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    classifier = Classifier(policy)
    for uri in ("untitled:Untitled-1", "vscode-notebook-cell:/a#x", "https://example.com/a.py"):
        assert classifier.classify(uri, "x = 1\n").label.name == "restricted", uri

    def explode(*_args: object) -> None:
        raise ValueError("boom")

    root = make_repo(tmp_path / "r", {"a.py": "x = 1\n"}, origin=MIRROR)
    monkeypatch.setattr("onbox.classification.classifier.evaluate", explode)
    decision = Classifier(policy).classify_path(root / "a.py")
    assert decision.label.name == "restricted" and "classifier error" in messages(decision)


# -- 5. tags are case-insensitive; unknown tags are said ------------------------------


def test_tags_are_case_insensitive(tmp_path: Path, policy: Policy) -> None:
    root = make_repo(
        tmp_path / "r",
        {".gitattributes": "pay/** onbox-tags=PCI,Frontend\n", "pay/a.py": "x = 1\n"},
        origin=MIRROR,
    )
    decision = Classifier(policy).classify_path(root / "pay" / "a.py")
    assert decision.label.name == "restricted"
    assert "tag 'PCI' (from onbox-tags in .gitattributes) is restricted" in messages(decision)
    unknown = [r for r in decision.reasons if "'Frontend'" in r.message]
    assert len(unknown) == 1 and "is not in the policy's [tags]" in unknown[0].message
    assert unknown[0].source == ".gitattributes:1"


def test_tags_differing_only_in_case_are_rejected() -> None:
    text = POLICY_TEXT.replace('pci = "restricted"', 'pci = "restricted"\nPCI = "public"')
    with pytest.raises(PolicyError) as caught:
        parse_policy(text.encode(), "p.toml")
    assert caught.value.key == "tags.PCI" and "differ only in case" in str(caught.value)


def test_policy_check_warns_about_unknown_tags(tmp_path: Path) -> None:
    text = POLICY_TEXT.replace(
        'label = "restricted"\n\n[[repos]]',
        'label = "restricted"\ntags = ["PCI", "pcii"]\n\n[[repos]]',
        1,
    )
    policy = parse_policy(text.encode(), "p.toml")
    assert policy_warnings(policy) == [
        "p.toml:8: [repos.0.tags] tag 'pcii' is not in [tags]: it changes no label (a typo?)"
    ]
    (tmp_path / "p.toml").write_text(text, encoding="utf-8")
    root = make_repo(tmp_path / "r", {".onbox.toml": 'tags = ["secrett"]\n', "a.py": ""})
    done = subprocess.run(
        [sys.executable, "-m", "onbox", "policy", "check", "p.toml", "--repo", str(root)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "warning: p.toml:8: [repos.0.tags] tag 'pcii'" in done.stderr
    assert "warning: .onbox.toml:1: tag 'secrett'" in done.stderr
    assert "'PCI'" not in done.stderr


# -- 6. gitignored, untracked files get the policy's ignored_label ---------------------

IGNORES = {
    ".gitignore": ".env*\n!.env.example\nbuild/\n/secrets\n*.log\n",
    "svc/.gitignore": "local/**\n!local/keep.py\n",
    "README.md": "hello\n",
    ".env.example": "KEY=\n",
    "svc/app.py": "x = 1\n",
    "fixtures/trace.log": "tracked despite *.log\n",
}
PROBES = [
    ".env",
    ".env.local",
    ".env.example",
    "build/out.py",
    "svc/build/out.py",
    "secrets/a.py",
    "svc/secrets/a.py",
    "svc/local/x.py",
    "svc/local/keep.py",
    "svc/app.py",
    "notes.log",
    "fixtures/trace.log",
    "README.md",
    "new.py",
]


def ignores_repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "r", {}, origin=MIRROR)
    write(root, IGNORES)
    git(root, "add", ".")
    git(root, "add", "-f", "fixtures/trace.log")
    git(root, "commit", "-qm", "init")
    write(root, {p: "x = 1\n" for p in PROBES if not (root / p).exists()})
    return root


def test_ignored_files_agree_with_git_check_ignore(tmp_path: Path, policy: Policy) -> None:
    root = ignores_repo(tmp_path)
    done = subprocess.run(
        ["git", "-C", str(root), "check-ignore", "--stdin"],
        input="\n".join(PROBES),
        capture_output=True,
        text=True,
    )
    ignored_by_git = set(done.stdout.split())
    assert ignored_by_git >= {".env", "build/out.py", "svc/local/x.py", "notes.log"}
    classifier = Classifier(policy)
    for probe in PROBES:
        decision = classifier.classify_path(root / probe)
        ignored = any(r.signal == "repo-ignored" for r in decision.reasons)
        assert ignored == (probe in ignored_by_git), probe
        assert decision.label.name == ("restricted" if ignored else "public"), probe


def test_ignore_changes_are_seen_and_ignored_label_is_policy_set(
    tmp_path: Path, policy: Policy
) -> None:
    root = ignores_repo(tmp_path)
    classifier = Classifier(policy)
    assert classifier.classify_path(root / "new.py").label.name == "public"
    with (root / ".gitignore").open("a", encoding="utf-8") as handle:
        handle.write("new.py\n")
    bump(root / ".gitignore")
    decision = classifier.classify_path(root / "new.py")
    assert decision.label.name == "restricted"
    assert any(r.source == ".gitignore:6" for r in decision.reasons)
    git(root, "add", "-f", "new.py")  # tracked now: part of the repository again
    assert classifier.classify_path(root / "new.py").label.name == "public"
    text = POLICY_TEXT.replace('default_label = "internal"', 'ignored_label = "internal"')
    lenient = parse_policy(text.encode(), "p.toml")
    assert Classifier(lenient).classify_path(root / ".env").label.name == "internal"


# -- 7. a directory where a signal file should be -----------------------------------


@pytest.mark.parametrize("name", [".gitattributes", "CODEOWNERS", ".onbox.toml"])
def test_signal_file_that_is_a_directory(tmp_path: Path, policy: Policy, name: str) -> None:
    root = make_repo(tmp_path / "r", {"a.py": "x = 1\n"}, origin=MIRROR)
    (root / name).mkdir()
    (root / name / "x").write_text("", encoding="utf-8")
    decision = Classifier(policy).classify_path(root / "a.py")
    assert decision.label.name == "restricted"
    assert "classifier error" not in messages(decision)  # handled where it happens
    assert "fail-closed" in decision.deciding
    assert name in messages(decision)


def test_report_marks_an_unclassifiable_file_highest(
    tmp_path: Path, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onbox.classification import report

    root = make_repo(tmp_path / "r", {"a.py": "x = 1\n"}, origin=MIRROR)

    def explode(*_args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(report, "evaluate", explode)
    (entry,) = report.build_report(root, policy).files
    assert (entry.label, entry.deciding) == ("restricted", ("fail-closed",))
