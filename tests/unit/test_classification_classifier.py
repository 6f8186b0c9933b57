"""The classifier end to end on real git repositories built by the tests."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import git
import pytest

from onbox.classification import signals
from onbox.classification.classifier import Classifier
from onbox.classification.decision import Decision
from onbox.classification.policy import Policy, builtin_policy, parse_policy

POLICY_TEXT = """\
[policy]
id = "test-policy"
default_label = "restricted"

[[repos]]
match = "github.com/acme/docs"
label = "public"
tags = ["docs"]

[[repos]]
match = "github.com/acme/*"
label = "public"

[tags]
docs = "public"
payments = "restricted"
team = "internal"

[owners]
"@acme/payments" = "restricted"
"@acme/platform" = "internal"

[content]
secrets = "restricted"
pii = "restricted"
"""
TOKEN = 'TOKEN = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"\n'


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY_TEXT.encode(), "policy.toml")


@pytest.fixture(autouse=True)
def _git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "t")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "t@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "t")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "t@example.com")


def make_repo(root: Path, remote: str | None, files: dict[str, str]) -> git.Repo:
    """A committed repository at ``root`` with ``files`` and an ``origin`` remote."""
    repo = git.Repo.init(root)
    if remote:
        repo.create_remote("origin", remote)
    write(root, files)
    repo.index.add(list(files))
    repo.index.commit("init")
    return repo


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def signals_of(decision: Decision) -> dict[str, str]:
    return {r.signal: r.label.name for r in decision.reasons}


def bump(path: Path) -> None:
    """Make sure a rewrite is visible to stat even on coarse-mtime filesystems."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


@pytest.mark.parametrize(
    "remote",
    [
        "https://github.com/Acme/Docs.git",
        "git@GITHUB.com:acme/docs.git",
        "ssh://git@github.com:22/acme/docs",
        "https://user:pw@github.com/acme/docs/",
    ],
)
def test_remote_forms_identify_the_repo(tmp_path: Path, policy: Policy, remote: str) -> None:
    make_repo(tmp_path / "r", remote, {"README.md": "hello\n"})
    decision = Classifier(policy).classify_path(tmp_path / "r" / "README.md")
    assert decision.repo is not None and decision.repo.lower() == "github.com/acme/docs"
    assert decision.label.name == "public"
    assert decision.deciding == ("policy-repo", "repo-tag")
    policy_reason = decision.reasons[0]
    assert policy_reason.signal == "policy-repo" and policy_reason.source == "policy.toml:7"


def test_unknown_repo_and_no_remote_get_default(tmp_path: Path, policy: Policy) -> None:
    make_repo(tmp_path / "a", "https://gitlab.com/other/x.git", {"a.py": "x = 1\n"})
    make_repo(tmp_path / "b", None, {"b.py": "x = 1\n"})
    (tmp_path / "loose.py").write_text("x = 1\n", encoding="utf-8")
    classifier = Classifier(policy)
    for path, words in (
        (tmp_path / "a" / "a.py", "no policy rule"),
        (tmp_path / "b" / "b.py", "no network remote"),
        (tmp_path / "loose.py", "not in a git repository"),
    ):
        decision = classifier.classify_path(path)
        assert decision.label.name == "restricted"
        assert decision.reasons[0].signal == "policy-default"
        assert words in decision.reasons[0].message
        assert decision.reasons[0].source == "policy.toml:3"  # default_label = ...


def test_nested_gitattributes_raise_with_source(tmp_path: Path, policy: Policy) -> None:
    root = tmp_path / "r"
    make_repo(
        root,
        "https://github.com/acme/app",
        {
            ".gitattributes": "*.py onbox-label=internal\n",
            "svc/pay/.gitattributes": "# payments\napi/** onbox-tags=payments\n",
            "svc/pay/api/charge.py": "x = 1\n",
            "svc/pay/readme.py": "x = 1\n",
            "other.txt": "x\n",
        },
    )
    classifier = Classifier(policy)
    charge = classifier.classify_path(root / "svc/pay/api/charge.py")
    assert charge.label.name == "restricted"
    sources = {r.source for r in charge.reasons if r.signal == "path-attribute"}
    assert sources == {".gitattributes:1", "svc/pay/.gitattributes:2"}
    assert classifier.classify_path(root / "svc/pay/readme.py").label.name == "internal"
    assert classifier.classify_path(root / "other.txt").label.name == "public"
    (root / ".git/info").mkdir(exist_ok=True)
    (root / ".git/info/attributes").write_text("other.txt onbox-label=restricted\n", "utf-8")
    assert classifier.classify_path(root / "other.txt").label.name == "restricted"


@pytest.mark.parametrize("location", [".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"])
def test_codeowners_each_location(tmp_path: Path, policy: Policy, location: str) -> None:
    root = tmp_path / "r"
    make_repo(
        root,
        "https://github.com/acme/app",
        {
            location: "* @acme/platform\n/billing/ @acme/payments @someone\n",
            "billing/invoice.py": "x = 1\n",
            "web/index.js": "x = 1\n",
        },
    )
    classifier = Classifier(policy)
    invoice = classifier.classify_path(root / "billing/invoice.py")
    assert invoice.label.name == "restricted"
    owner_reasons = [r for r in invoice.reasons if r.signal == "codeowners"]
    assert [r.source for r in owner_reasons] == [f"{location}:2"]
    assert "@acme/payments" in owner_reasons[0].message
    assert "policy.toml:20" in owner_reasons[0].message  # where the owner is mapped
    assert classifier.classify_path(root / "web/index.js").label.name == "internal"


def test_codeowners_first_location_of_each_platform_wins(tmp_path: Path, policy: Policy) -> None:
    # GitHub reads .github/CODEOWNERS, GitLab the root one; .gitlab/ is shadowed for both.
    root = tmp_path / "r"
    make_repo(
        root,
        "https://github.com/acme/app",
        {
            ".github/CODEOWNERS": "* @acme/platform\n",
            "CODEOWNERS": "* @acme/platform\n",
            ".gitlab/CODEOWNERS": "* @acme/payments\n",
            "a.py": "x = 1\n",
        },
    )
    decision = Classifier(policy).classify_path(root / "a.py")
    assert decision.label.name == "internal"
    sources = {r.source for r in decision.reasons if r.signal == "codeowners"}
    assert sources == {".github/CODEOWNERS:1", "CODEOWNERS:1"}


def test_gitlab_codeowners_sections(tmp_path: Path, policy: Policy) -> None:
    # Issue 13: a GitLab billing file came out internal where its owner maps to restricted.
    root = tmp_path / "r"
    make_repo(
        root,
        "https://github.com/acme/app",  # a public repo rule: only owners raise
        {
            ".gitlab/CODEOWNERS": "* @acme/platform\n\n^[Billing][2] @acme/payments\nbilling/\n",
            "billing/invoice.py": "x = 1\n",
            "web/index.js": "x = 1\n",
        },
    )
    classifier = Classifier(policy)
    invoice = classifier.classify_path(root / "billing/invoice.py")
    assert invoice.label.name == "restricted"
    (reason,) = [
        r for r in invoice.reasons if r.signal == "codeowners" and r.label.name == "restricted"
    ]
    assert reason.source == ".gitlab/CODEOWNERS:4" and "[Billing]" in reason.message
    assert classifier.classify_path(root / "web/index.js").label.name == "internal"


def test_content_marker_and_repo_file(tmp_path: Path, policy: Policy) -> None:
    root = tmp_path / "r"
    make_repo(
        root,
        "https://github.com/acme/app",
        {
            "secret.py": "import os\n" + TOKEN,
            "marked.py": "# onbox: internal\nx = 1\n",
            "plain.py": "x = 1\n",
        },
    )
    classifier = Classifier(policy)
    secret = classifier.classify_path(root / "secret.py")
    assert secret.label.name == "restricted" and "content" in secret.deciding
    assert [f.type for f in secret.findings] == ["github-token"]
    assert [r.source for r in secret.reasons if r.signal == "content"] == ["secret.py:2"]
    marked = classifier.classify_path(root / "marked.py")
    assert marked.label.name == "internal" and marked.deciding == ("marker",)
    assert classifier.classify_path(root / "plain.py").label.name == "public"
    (root / ".onbox.toml").write_text('tags = ["team"]\n', encoding="utf-8")
    plain = classifier.classify_path(root / "plain.py")
    assert plain.label.name == "internal"
    assert [r.source for r in plain.reasons if r.signal == "repo-tag"] == [".onbox.toml:1"]


def test_cache_hits_and_invalidation(tmp_path: Path, policy: Policy) -> None:
    root = tmp_path / "r"
    repo = make_repo(root, "https://github.com/acme/app", {"a.py": "x = 1\n"})
    uri = (root / "a.py").as_uri()
    classifier = Classifier(policy)
    first = classifier.classify(uri, "x = 1\n", 1)
    assert classifier.classify(uri, "x = 1\n", 1) is first  # warm: the same object
    assert classifier.classify(uri, "x = 1\n" + TOKEN, 1).label.name == "restricted"
    assert classifier.classify(uri, "x = 1\n", 2).label.name == "public"
    changes = [
        (".gitattributes", "a.py onbox-label=internal\n", "internal"),
        ("CODEOWNERS", "a.py @acme/payments\n", "restricted"),
    ]
    for name, text, label in changes:
        (root / name).write_text(text, encoding="utf-8")
        bump(root / name)
        assert classifier.classify(uri, "x = 1\n", 2).label.name == label, name
        (root / name).unlink()
        assert classifier.classify(uri, "x = 1\n", 2).label.name == "public", name
    (root / ".onbox.toml").write_text('tags = ["team"]\n', encoding="utf-8")
    assert classifier.classify(uri, "x = 1\n", 2).label.name == "internal"
    (root / ".onbox.toml").unlink()
    repo.delete_remote(repo.remote("origin"))
    repo.create_remote("origin", "https://gitlab.example.com/unknown/app.git")
    bump(root / ".git" / "config")
    moved = classifier.classify(uri, "x = 1\n", 2)
    assert moved.label.name == "restricted" and moved.repo == "gitlab.example.com/unknown/app"
    classifier.set_policy(builtin_policy())
    assert classifier.classify(uri, "x = 1\n", 2).policy_id == "builtin-fail-closed"


def test_macro_change_in_root_reexpands_nested_files(tmp_path: Path, policy: Policy) -> None:
    root = tmp_path / "r"
    make_repo(
        root,
        "https://github.com/acme/app",
        {
            ".gitattributes": "[attr]sensitive onbox-label=internal\n",
            "sub/.gitattributes": "*.py sensitive\n",
            "sub/a.py": "x = 1\n",
        },
    )
    classifier = Classifier(policy)
    assert classifier.classify_path(root / "sub/a.py").label.name == "internal"
    (root / ".gitattributes").write_text("[attr]sensitive onbox-label=restricted\n", "utf-8")
    bump(root / ".gitattributes")
    assert classifier.classify_path(root / "sub/a.py").label.name == "restricted"


def test_rename_relabels(tmp_path: Path, policy: Policy) -> None:
    root = tmp_path / "r"
    repo = make_repo(
        root,
        "https://github.com/acme/app",
        {
            ".gitattributes": "vault/** onbox-label=restricted\n",
            "notes.py": "x = 1\n",
            "vault/.keep": "",
        },
    )
    classifier = Classifier(policy)
    assert classifier.classify_path(root / "notes.py").label.name == "public"
    repo.git.mv("notes.py", "vault/notes.py")
    assert classifier.classify_path(root / "vault/notes.py").label.name == "restricted"


def test_submodule_uses_its_own_remote(tmp_path: Path, policy: Policy) -> None:
    make_repo(tmp_path / "lib", None, {"lib.py": "x = 1\n"})
    root = tmp_path / "r"
    make_repo(root, "https://github.com/acme/app", {"a.py": "x = 1\n"})
    subprocess.run(
        [
            "git",
            "-C",
            str(root),
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            str(tmp_path / "lib"),
            "vendor/lib",
        ],
        check=True,
    )
    subprocess.run(
        [
            "git",
            "-C",
            str(root / "vendor/lib"),
            "remote",
            "set-url",
            "origin",
            "git@github.com:acme/docs.git",
        ],
        check=True,
    )
    assert (root / "vendor/lib/.git").is_file()  # a gitdir: file, not a directory
    decision = Classifier(policy).classify_path(root / "vendor/lib/lib.py")
    assert decision.repo == "github.com/acme/docs" and decision.path == "lib.py"
    assert decision.label.name == "public"
    subprocess.run(
        [
            "git",
            "-C",
            str(root / "vendor/lib"),
            "remote",
            "set-url",
            "origin",
            "git@github.com:evil/lib.git",
        ],
        check=True,
    )
    assert Classifier(policy).classify_path(root / "vendor/lib/lib.py").label.name == "restricted"


def test_symlink_takes_the_higher_of_link_and_target(tmp_path: Path, policy: Policy) -> None:
    root = tmp_path / "r"
    make_repo(
        root,
        "https://github.com/acme/app",
        {
            ".gitattributes": "vault/** onbox-label=restricted\n",
            "vault/key.py": "x = 1\n",
        },
    )
    (root / "public").mkdir()
    (root / "public" / "link.py").symlink_to(root / "vault" / "key.py")
    decision = Classifier(policy).classify_path(root / "public" / "link.py")
    assert decision.label.name == "restricted"
    assert any("symlink target" in r.message for r in decision.reasons)


def test_case_variant_paths(tmp_path: Path, policy: Policy) -> None:
    root = tmp_path / "r"
    make_repo(
        root,
        "https://github.com/acme/app",
        {
            ".gitattributes": "secret/** onbox-label=restricted\n",
            "secret/a.py": "x = 1\n",
            "Secret/a.py": "x = 1\n",
        },
    )
    classifier = Classifier(policy)
    assert classifier.classify_path(root / "secret/a.py").label.name == "restricted"
    assert classifier.classify_path(root / "Secret/a.py").label.name == "public"
    subprocess.run(["git", "-C", str(root), "config", "core.ignorecase", "true"], check=True)
    bump(root / ".git" / "config")
    assert classifier.classify_path(root / "Secret/a.py").label.name == "restricted"


def test_unknown_repo_local_label_counts_as_highest(tmp_path: Path, policy: Policy) -> None:
    root = tmp_path / "r"
    make_repo(
        root,
        "https://github.com/acme/app",
        {
            ".gitattributes": "*.py onbox-label=secrett\n",
            "a.py": "x = 1\n",
        },
    )
    decision = Classifier(policy).classify_path(root / "a.py")
    assert decision.label.name == "restricted"
    assert "unknown label 'secrett'" in decision.reasons[-1].message


def test_failure_modes_give_highest_with_reason(
    tmp_path: Path, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail closed means the HIGHEST label, even under a policy whose default is lower."""
    lenient = dataclasses.replace(policy, default_label=policy.scale.parse("internal"))
    classifier = Classifier(lenient)
    root = tmp_path / "r"
    make_repo(root, "https://github.com/acme/app", {"a.py": "x = 1\n"})
    cases = {
        "untitled buffer": classifier.classify("untitled:Untitled-1", "x"),
        "not a local file": classifier.classify("https://example.com/a.py", "x"),
        "cannot read": classifier.classify_path(tmp_path / "missing.py"),
    }
    (root / ".onbox.toml").write_text("tags = [\n", encoding="utf-8")
    cases[".onbox.toml cannot be used"] = classifier.classify_path(root / "a.py")
    (root / ".onbox.toml").unlink()
    expired = dataclasses.replace(lenient, expires=datetime.now(UTC) - timedelta(days=1))
    cases["expired"] = Classifier(expired).classify_path(root / "a.py")

    def explode(*_args: object) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr("onbox.classification.classifier.evaluate", explode)
    cases["classifier error (RuntimeError: injected fault)"] = Classifier(lenient).classify_path(
        root / "a.py"
    )
    for words, decision in cases.items():
        assert decision.label.name == "restricted", words
        assert any(
            words in r.message and r.label.name == "restricted" and r.signal == "fail-closed"
            for r in decision.reasons
        ), (words, decision.reasons)
        assert "fail-closed" in decision.deciding
        expected = "builtin-fail-closed" if words == "expired" else "test-policy"
        assert decision.policy_id == expected, words
    assert signals.evaluate is not explode  # the fault stayed in the classifier module


def test_decision_json_shape(tmp_path: Path, policy: Policy) -> None:
    root = tmp_path / "r"
    make_repo(root, "https://github.com/acme/app", {"a.py": TOKEN})
    data = Classifier(policy).classify_path(root / "a.py").to_json()
    assert data["label"] == "restricted" and data["repo"] == "github.com/acme/app"
    assert data["findings"][0]["type"] == "github-token"
    assert "ghp_" not in str(data)  # the secret itself never appears


def test_concurrent_classification_matches_sequential(tmp_path: Path, policy: Policy) -> None:
    from concurrent.futures import ThreadPoolExecutor

    root = tmp_path / "r"
    files = {f"d{i % 5}/f{i}.py": (TOKEN if i % 7 == 0 else "x = 1\n") for i in range(60)}
    files[".gitattributes"] = "d1/** onbox-label=internal\nd2/** onbox-tags=payments\n"
    make_repo(root, "https://github.com/acme/app", files)
    paths = [root / name for name in files if name.endswith(".py")]
    expected = [Classifier(policy).classify_path(p).label for p in paths]
    shared = Classifier(policy)
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda p: shared.classify_path(p).label, paths * 3))
    assert got == expected * 3
    assert {label.name for label in expected} == {"public", "internal", "restricted"}


def test_language_id_picks_the_grammar(tmp_path: Path, policy: Policy) -> None:
    root = tmp_path / "r"
    make_repo(root, "https://github.com/acme/app", {"script": "x = 1\n"})
    uri = (root / "script").as_uri()
    text = "# old key q8ZrT3vN1xW7pL2mK9sB4dF6hJ0cY5aE\nx = 1\n"
    classifier = Classifier(policy)
    # Without a grammar a token in a comment is not recognised as a literal …
    assert classifier.classify(uri, text, 1).label.name == "public"
    # … with the editor's languageId it is.
    decision = classifier.classify(uri, text, 1, language="python")
    assert decision.label.name == "restricted"
    assert [f.type for f in decision.findings] == ["high-entropy-string"]
