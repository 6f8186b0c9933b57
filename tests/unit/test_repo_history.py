"""Repository identity bound to history: pinned root commits in ``[[repos]]`` rules.

The property (issue 13): no edit a developer can make inside a checkout (remotes,
``include``/``insteadOf`` in ``.git/config``, attributes, CODEOWNERS, ``.onbox.toml``,
markers, moving files) lowers a label below what the signed policy gives the history.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onbox.classification.classifier import Classifier
from onbox.classification.history import RootCommitCache
from onbox.classification.policy import Policy, parse_policy
from onbox.classification.policy_model import PolicyError
from onbox.classification.repo import discover
from tests.support.repos import git

PAYMENTS_URL = "https://github.com/acme/payments.git"
DOCS_URL = "https://github.com/acme/docs.git"


def make_repo(root: Path, remote: str, files: dict[str, str]) -> str:
    """A committed repository; returns its root commit."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    git(root, "remote", "add", "origin", remote)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return git(root, "rev-list", "--max-parents=0", "HEAD")


def policy_text(payments_root: str, docs_root: str) -> str:
    return f"""\
[policy]
id = "pinned"
default_label = "restricted"

[[repos]]
match = "github.com/acme/payments"
label = "internal"
root_commits = ["{payments_root}"]

[[repos]]
match = "github.com/acme/docs"
label = "public"
root_commits = ["{docs_root}"]

[[repos]]
match = "github.com/acme/*"
label = "public"

[tags]
pci = "restricted"

[owners]
"@acme/docs" = "public"
"""


@pytest.fixture(autouse=True)
def _git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "t")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "t@example.com")


@pytest.fixture
def checkouts(tmp_path: Path) -> tuple[Path, Path, Policy]:
    payments = tmp_path / "payments"
    docs = tmp_path / "docs"
    payments_root = make_repo(payments, PAYMENTS_URL, {"pay.py": "x = 1\n"})
    docs_root = make_repo(docs, DOCS_URL, {"guide.md": "# Guide\n"})
    policy = parse_policy(policy_text(payments_root, docs_root).encode(), "policy.toml")
    return payments, docs, policy


def test_root_commits_must_be_full_commit_ids() -> None:
    text = policy_text("a" * 40, "b" * 40).replace("b" * 40, "abc123")
    with pytest.raises(PolicyError, match="root_commits"):
        parse_policy(text.encode(), "policy.toml")
    parsed = parse_policy(policy_text("A" * 40, "b" * 64).encode(), "policy.toml")
    assert parsed.repos[0].root_commits == ("a" * 40,)


def test_set_url_to_a_pinned_repo_does_not_relabel(checkouts: tuple[Path, Path, Policy]) -> None:
    payments, docs, policy = checkouts
    classifier = Classifier(policy)
    assert classifier.classify_path(docs / "guide.md").label.name == "public"
    assert classifier.classify_path(payments / "pay.py").label.name == "internal"
    git(payments, "remote", "set-url", "origin", DOCS_URL)
    decision = Classifier(policy).classify_path(payments / "pay.py")
    assert decision.label.name == "restricted"
    (pinned,) = [r for r in decision.reasons if "names github.com/acme/docs" in r.message]
    assert "does not pin" in pinned.message and pinned.label.name == "restricted"
    assert pinned.source == "policy.toml:13"


def test_set_url_to_an_unpinned_repo_keeps_the_history_label(
    checkouts: tuple[Path, Path, Policy],
) -> None:
    payments, _, policy = checkouts
    git(payments, "remote", "set-url", "origin", "https://github.com/acme/random")
    decision = Classifier(policy).classify_path(payments / "pay.py")
    assert decision.label.name == "internal"
    assert any("whatever the remotes say" in r.message for r in decision.reasons)


def test_unborn_head_cannot_claim_a_pinned_repo(tmp_path: Path, checkouts: tuple) -> None:
    _, _, policy = checkouts
    fresh = tmp_path / "fresh"
    subprocess.run(["git", "init", "-q", str(fresh)], check=True)
    git(fresh, "remote", "add", "origin", DOCS_URL)
    (fresh / "copied.py").write_text("x = 1\n", encoding="utf-8")
    decision = Classifier(policy).classify_path(fresh / "copied.py")
    assert decision.label.name == "restricted"
    assert any("cannot be checked" in r.message for r in decision.reasons)


def test_roots_are_cached_by_head_and_warm_decisions_start_no_git(
    checkouts: tuple[Path, Path, Policy], monkeypatch: pytest.MonkeyPatch
) -> None:
    payments, _, policy = checkouts
    classifier = Classifier(policy)
    uri = (payments / "pay.py").as_uri()
    assert classifier.classify(uri, "x = 1\n", 1).label.name == "internal"
    calls: list[list[str]] = []
    real_run = subprocess.run

    def counting_run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(list(args))
        return real_run(args, **kwargs)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(subprocess, "run", counting_run)
    assert classifier.classify(uri, "x = 1\n", 1).label.name == "internal"
    assert classifier.classify(uri, "x = 2\n", 2).label.name == "internal"  # same HEAD
    assert not [c for c in calls if "rev-list" in c]
    monkeypatch.setattr(subprocess, "run", real_run)
    # A commit moves HEAD: the cached decision is stale and the roots are listed again.
    (payments / "more.py").write_text("y = 2\n", encoding="utf-8")
    git(payments, "add", "more.py")
    git(payments, "commit", "-q", "-m", "more")
    seen: list[tuple[str, object]] = []
    repo = discover(payments / "pay.py")
    assert repo is not None
    history = RootCommitCache().history(repo, seen)  # type: ignore[arg-type]
    assert history.head == git(payments, "rev-parse", "HEAD")
    assert {p for p, _ in seen} >= {str(payments / ".git" / "HEAD")}


# --- the property --------------------------------------------------------------------

Edit = Callable[[Path], Path]


def _bump(path: Path) -> None:
    st_ = path.stat()
    os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 5_000_000_000))


def _write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    _bump(path)


def _config(root: Path, *args: str) -> None:
    git(root, "config", *args)
    _bump(root / ".git" / "config")


URLS = [
    DOCS_URL,
    "git@github.com:acme/docs.git",
    "https://github.com/acme/random",
    "https://gitlab.example.com/x/y",
    "/srv/mirror/payments.git",
]


def edits() -> st.SearchStrategy[tuple[str, str]]:
    return st.tuples(
        st.sampled_from(
            [
                "set-url",
                "add-remote",
                "remove-origin",
                "include",
                "insteadof",
                "attributes",
                "info-attributes",
                "codeowners",
                "onbox-toml",
                "marker",
                "move",
            ]
        ),
        st.sampled_from(URLS),
    )


def apply_edit(root: Path, file: Path, edit: tuple[str, str]) -> Path:
    """Apply one developer edit to the checkout; return where the file now is."""
    kind, url = edit
    if kind == "set-url":
        if "origin" in git(root, "remote").split():
            git(root, "remote", "set-url", "origin", url)
        else:
            git(root, "remote", "add", "origin", url)
    elif kind == "add-remote":
        name = f"r{len(git(root, 'remote').split())}"
        git(root, "remote", "add", name, url)
    elif kind == "remove-origin":
        if "origin" in git(root, "remote").split():
            git(root, "remote", "remove", "origin")
    elif kind == "include":
        _write(root, ".git/extra.cfg", f'[remote "origin"]\n\turl = {url}\n')
        _config(root, "--add", "include.path", "extra.cfg")
    elif kind == "insteadof":
        _config(root, f"url.{url}.insteadOf", "https://github.com/acme/payments")
    elif kind == "attributes":
        _write(root, ".gitattributes", "* -onbox-label\n*.py onbox-label=public -onbox-tags\n")
    elif kind == "info-attributes":
        _write(root, ".git/info/attributes", "[attr]pub onbox-label=public\n** pub\n")
    elif kind == "codeowners":
        _write(root, ".github/CODEOWNERS", "* @acme/docs\n")
    elif kind == "onbox-toml":
        _write(root, ".onbox.toml", 'label = "public"\ntags = []\n')
    elif kind == "marker":
        file.write_text("# onbox: public\n" + file.read_text(encoding="utf-8"), encoding="utf-8")
        _bump(file)
    elif kind == "move":
        target = root / "docs" / f"moved{len(list(root.rglob('*.py')))}.py"
        target.parent.mkdir(exist_ok=True)
        file.rename(target)
        return target
    return file


@pytest.fixture
def pristine(tmp_path: Path) -> tuple[Path, Policy]:
    payments = tmp_path / "payments"
    payments_root = make_repo(payments, PAYMENTS_URL, {"pay.py": "x = 1\n"})
    docs_root = make_repo(tmp_path / "docs", DOCS_URL, {"guide.md": "# Guide\n"})
    return payments, parse_policy(policy_text(payments_root, docs_root).encode(), "p.toml")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(sequence=st.lists(edits(), min_size=1, max_size=4))
def test_no_checkout_edit_lowers_the_history_label(
    pristine: tuple[Path, Policy], tmp_path: Path, sequence: list[tuple[str, str]]
) -> None:
    source, policy = pristine
    work = tmp_path / f"work{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work, symlinks=True)
    floor = policy.scale.parse("internal")  # what the policy gives payments' history
    classifier = Classifier(policy)  # one classifier across the edits: no stale answer
    file = work / "pay.py"
    assert classifier.classify_path(file).label == floor
    for edit in sequence:
        file = apply_edit(work, file, edit)
        warm = classifier.classify_path(file)
        cold = Classifier(policy).classify_path(file)
        assert warm.label >= floor, (edit, warm.reasons)
        assert cold.label == warm.label, (edit, cold.reasons, warm.reasons)
    shutil.rmtree(work)


def test_the_server_watches_what_a_checkout_changes(checkouts: tuple[Path, Path, Policy]) -> None:
    # A checkout of another branch can change the root commits: open documents re-label.
    import fnmatch

    from onbox.classification.signals import SignalReader, evaluate
    from onbox.server.lsp import SIGNAL_FILES

    payments, _, policy = checkouts
    path = payments / "pay.py"
    watched = [p for p, _ in evaluate(policy, SignalReader(), path, "x = 1\n").watched]
    for name in ("HEAD", "config"):
        target = str(payments / ".git" / name)
        assert target in watched
        assert any(
            fnmatch.fnmatch(target, "*/" + glob.removeprefix("**/")) for glob in SIGNAL_FILES
        )


def test_a_fork_sharing_root_commits_cannot_lower_the_original(
    checkouts: tuple[Path, Path, Policy], tmp_path: Path
) -> None:
    # acme/payments-site was forked from payments and pinned to the same root: a payments
    # checkout calling itself payments-site keeps payments' label (the higher of both).
    from onbox.classification.policy import policy_warnings

    payments, _, _ = checkouts
    root = git(payments, "rev-list", "--max-parents=0", "HEAD")
    text = (
        policy_text(root, "b" * 40)
        + f'\n[[repos]]\nmatch = "github.com/acme/payments-site"\nlabel = "public"\n'
        f'root_commits = ["{root}"]\n'
    )
    forked = parse_policy(text.encode(), "policy.toml")
    assert any("also pinned by 'github.com/acme/payments'" in w for w in policy_warnings(forked))
    git(payments, "remote", "set-url", "origin", "https://github.com/acme/payments-site")
    assert Classifier(forked).classify_path(payments / "pay.py").label.name == "internal"
