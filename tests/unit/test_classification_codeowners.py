"""CODEOWNERS with GitHub's and GitLab's semantics, on the examples of their documentation."""

from __future__ import annotations

import logging

import pytest

from onbox.classification.codeowners import (
    GITLAB,
    dialect_for,
    files_to_read,
    parse_codeowners,
    pattern_regex,
)

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
    # GitHub documents that escaping a leading '#' does not work: the line is a comment.
    only = parse_codeowners("\\#notes.txt @n\n", "CODEOWNERS")
    assert only.owners_of("#notes.txt") is None
    assert only.warnings and "escaped '#'" in only.warnings[0]


# The examples of GitLab's "Syntax of CODEOWNERS file" page, sections included.
GITLAB_EXAMPLE = """\
# Specify a default Code Owner by using a wildcard:
* @default-codeowner

# Rules defined later in the file take precedence over earlier rules.
*.rb @ruby-owner

# Files with a `#` can still be accessed by escaping the pound sign:
\\#file_with_pound.rb @owner-file-with-pound

# You can use both usernames or email addresses to match users:
LICENSE @legal janedoe@gitlab.com

# Use group names to match groups, and nested groups:
README @group @group/with-nested/subgroup

# Specify Code Owners for directories:
/docs/ @all-docs
/docs/* @root-docs
/docs/**/*.md @root-docs

# Match directories nested anywhere in the repository:
lib/ @lib-owner

# Match only a directory in the root of the repository:
/config/ @config-owner

# If the path contains spaces, escape them like this:
path\\ with\\ spaces/ @space-owner

# Assign a role as a Code Owner:
/ops/ @@maintainer

# Code Owners sections:
[Documentation]
ee/docs    @docs
docs       @docs

# Use of default owners for a section. In this case, all files (*) are owned by
# the dev team except the README.md and data-models which are owned by other teams.
[Development] @dev-team
*
README.md @docs-team
data-models/ @data-science-team

# This section is combined with the previously defined [Documentation] section:
[DOCUMENTATION]
README.md  @docs

^[Optional Billing] @billing-team
billing/
"""

GITLAB_CASES = [
    # (path, owners by section in file order: "" is before any header)
    ("app/models/user.rb", {"": ("@ruby-owner",), "Development": ("@dev-team",)}),
    ("#file_with_pound.rb", {"": ("@owner-file-with-pound",), "Development": ("@dev-team",)}),
    ("LICENSE", {"": ("@legal", "janedoe@gitlab.com"), "Development": ("@dev-team",)}),
    ("README", {"": ("@group", "@group/with-nested/subgroup"), "Development": ("@dev-team",)}),
    (
        "docs/index.md",
        {"": ("@root-docs",), "Documentation": ("@docs",), "Development": ("@dev-team",)},
    ),
    (
        "docs/a/b.md",
        {"": ("@root-docs",), "Documentation": ("@docs",), "Development": ("@dev-team",)},
    ),
    (
        "docs/a/b.png",
        {"": ("@all-docs",), "Documentation": ("@docs",), "Development": ("@dev-team",)},
    ),
    (
        "ee/docs/x.png",
        {"": ("@default-codeowner",), "Documentation": ("@docs",), "Development": ("@dev-team",)},
    ),
    ("src/lib/a.c", {"": ("@lib-owner",), "Development": ("@dev-team",)}),
    ("config/app.yml", {"": ("@config-owner",), "Development": ("@dev-team",)}),
    ("x/config/app.yml", {"": ("@default-codeowner",), "Development": ("@dev-team",)}),
    ("path with spaces/a", {"": ("@space-owner",), "Development": ("@dev-team",)}),
    ("ops/run.sh", {"": ("@@maintainer",), "Development": ("@dev-team",)}),
    (
        "README.md",
        {"": ("@default-codeowner",), "Documentation": ("@docs",), "Development": ("@docs-team",)},
    ),
    ("data-models/a.csv", {"": ("@default-codeowner",), "Development": ("@data-science-team",)}),
    (
        "billing/invoice.py",
        {
            "": ("@default-codeowner",),
            "Development": ("@dev-team",),
            "Optional Billing": ("@billing-team",),
        },
    ),
]


@pytest.mark.parametrize(("path", "expected"), GITLAB_CASES)
def test_gitlab_documented_example(path: str, expected: dict[str, tuple[str, ...]]) -> None:
    parsed = parse_codeowners(GITLAB_EXAMPLE, ".gitlab/CODEOWNERS")
    assert parsed.dialect == GITLAB and parsed.warnings == []
    assert {m.section: m.owners for m in parsed.matches(path)} == expected


def test_gitlab_sections_detected_at_the_root_and_optional_flag_kept() -> None:
    text = "^[Billing] @billing\nbilling/\n"
    assert dialect_for(text, "CODEOWNERS") == GITLAB
    assert dialect_for("* @a\n[ab].py @x\n", "CODEOWNERS") != GITLAB  # a GitHub range
    (hit,) = parse_codeowners(text, "CODEOWNERS").matches("billing/x.py")
    assert hit.owners == ("@billing",) and hit.optional and hit.section == "Billing"


def test_gitlab_pattern_without_slash_matches_at_any_depth() -> None:
    parsed = parse_codeowners("[S]\ndocs/* @d\n", ".gitlab/CODEOWNERS")
    assert parsed.owners_of("a/docs/x.md") == (("@d",), 2)
    assert parsed.owners_of("docs/a/x.md") is None  # "*" stays in one directory


def test_both_platforms_files_are_read() -> None:
    present = {".github/CODEOWNERS", "CODEOWNERS", ".gitlab/CODEOWNERS"}
    assert files_to_read(present.__contains__) == [".github/CODEOWNERS", "CODEOWNERS"]
    assert files_to_read({".gitlab/CODEOWNERS"}.__contains__) == [".gitlab/CODEOWNERS"]
    assert files_to_read({"docs/CODEOWNERS"}.__contains__) == ["docs/CODEOWNERS"]
