"""CODEOWNERS with GitHub's semantics, on the examples of GitHub's documentation."""

from __future__ import annotations

import logging

import pytest

from onbox.classification.codeowners import parse_codeowners, pattern_regex

# The example file from GitHub's "About code owners" page.
GITHUB_EXAMPLE = """\
# This is a comment.
# Each line is a file pattern followed by one or more owners.

# These owners will be the default owners for everything in
# the repo. Unless a later match takes precedence,
# @global-owner1 and @global-owner2 will be requested for
# review when someone opens a pull request.
*       @global-owner1 @global-owner2

# Order is important; the last matching pattern takes the most
# precedence. When someone opens a pull request that only
# modifies JS files, only @js-owner and not the global
# owner(s) will be requested for a review.
*.js    @js-owner #This is an inline comment.

# You can also use email addresses if you prefer. They'll be
# used to look up users just like we do for commit author
# emails.
*.go docs@example.com

# Teams can be specified as code owners as well. Teams should
# be identified in the format @org/team-name. Teams must have
# explicit write access to the repository. In this example,
# the octocats team in the octo-org organization owns all .txt files.
*.txt @octo-org/octocats

# In this example, @doctocat owns any files in the build/logs
# directory at the root of the repository and any of its
# subdirectories.
/build/logs/ @doctocat

# The `docs/*` pattern will match files like
# `docs/getting-started.md` but not further nested files like
# `docs/build-app/troubleshooting.md`.
docs/*  docs@example.com

# In this example, @octocat owns any file in an apps directory
# anywhere in your repository.
apps/ @octocat

# In this example, @doctocat owns any file in the `/docs`
# directory in the root of your repository and any of its
# subdirectories.
/docs/ @doctocat

# In this example, any change inside the `/scripts` directory
# will require approval from @doctocat or @octocat.
/scripts/ @doctocat @octocat

# In this example, @octocat owns any file in a `/logs` directory such as
# `/build/logs`, `/scripts/logs`, and `/deeply/nested/logs`. Any changes
# in a `/logs` directory will require approval from @octocat.
**/logs @octocat

# In this example, @octocat owns any file in the `/apps`
# directory in the root of your repository except for the `/apps/github`
# subdirectory, as its owners are left empty. Without an owner, changes
# to `apps/github` can be made with the approval of any user who has
# write access to the repository.
/apps/ @octocat
/apps/github

# In this example, @octocat owns any file in the `/apps`
# directory in the root of your repository except for the `/apps/github`
# subdirectory, as this subdirectory has its own owner @doctocat
/apps/ @octocat
/apps/github @doctocat
"""

CASES = [
    ("README.md", ("@global-owner1", "@global-owner2")),
    ("src/app.js", ("@js-owner",)),
    ("cmd/main.go", ("docs@example.com",)),
    ("notes/todo.txt", ("@octo-org/octocats",)),
    ("build/logs/today.log", ("@octocat",)),  # **/logs comes later and wins
    ("build/out.bin", ("@global-owner1", "@global-owner2")),
    ("docs/getting-started.md", ("@doctocat",)),  # /docs/ comes after docs/*
    ("docs/build-app/troubleshooting.md", ("@doctocat",)),
    ("web/apps/index.html", ("@octocat",)),
    ("scripts/deploy.sh", ("@doctocat", "@octocat")),
    ("scripts/logs/x.log", ("@octocat",)),
    ("deeply/nested/logs/x.log", ("@octocat",)),
    ("apps/github/main.rb", ("@doctocat",)),
    ("apps/other/main.rb", ("@octocat",)),
    ("Apps/other/main.rb", ("@global-owner1", "@global-owner2")),  # case-sensitive
]


@pytest.mark.parametrize(("path", "owners"), CASES)
def test_github_documented_example(path: str, owners: tuple[str, ...]) -> None:
    parsed = parse_codeowners(GITHUB_EXAMPLE, ".github/CODEOWNERS")
    assert parsed.warnings == []
    hit = parsed.owners_of(path)
    assert hit is not None and hit[0] == owners


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("docs/*", ["docs/getting-started.md"], ["docs/build-app/troubleshooting.md", "a/docs/x"]),
        ("/build/logs/", ["build/logs/a", "build/logs/a/b"], ["x/build/logs/a", "build/logs"]),
        ("apps/", ["apps/a", "x/y/apps/z/w"], ["apps", "myapps/a"]),
        ("**/logs", ["logs", "logs/x", "a/b/logs/c"], ["catalogs/x", "logs2/x"]),
        ("*.js", ["a.js", "x/y/b.js"], ["a.jsx", "a.js.map"]),
        ("/apps/github", ["apps/github", "apps/github/x"], ["apps/githubx", "x/apps/github"]),
        ("src/**/test.py", ["src/test.py", "src/a/b/test.py"], ["lib/src/test.py"]),
        ("*", ["a", "a/b/c"], []),
    ],
)
def test_pattern_semantics(pattern: str, matching: list[str], not_matching: list[str]) -> None:
    parsed = parse_codeowners(f"{pattern} @o\n", "CODEOWNERS")
    for path in matching:
        assert parsed.owners_of(path) is not None, (pattern, path, pattern_regex(pattern))
    for path in not_matching:
        assert parsed.owners_of(path) is None, (pattern, path, pattern_regex(pattern))


def test_invalid_line_skipped_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    text = "* @all\n!*.md @nobody\n[ab].py @x\n*.py @py not-an-owner\n*.rs @rust\n"
    with caplog.at_level(logging.WARNING):
        parsed = parse_codeowners(text, "CODEOWNERS")
    assert len(parsed.warnings) == 3
    assert {w.split(":")[1] for w in parsed.warnings} == {"2", "3", "4"}
    assert any("CODEOWNERS:4" in r.getMessage() for r in caplog.records)
    assert parsed.owners_of("x.py") == (("@all",), 1)  # the invalid *.py line is skipped
    assert parsed.owners_of("x.rs") == (("@rust",), 5)  # later lines still apply


def test_escaped_hash_and_empty_owners() -> None:
    parsed = parse_codeowners("\\#notes.txt @n\n* @all\nvendor/\n", "CODEOWNERS")
    assert parsed.owners_of("#notes.txt") == (("@all",), 2)
    assert parsed.owners_of("vendor/lib.c") == ((), 3)
    only = parse_codeowners("\\#notes.txt @n\n", "CODEOWNERS")
    assert only.owners_of("#notes.txt") == (("@n",), 1)
