"""Property: repo-local signals only raise. Adding one never lowers a label."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onbox.classification.classifier import Classifier
from onbox.classification.policy import parse_policy

LABELS = ["public", "internal", "restricted"]
TAGS = ["t-public", "t-internal", "t-restricted", "t-unknown"]
OWNERS = ["@acme/pub", "@acme/int", "@acme/res", "@acme/unmapped", "x@acme.com"]
COUNTER = itertools.count()


def policy_for(base: str | None, default: str) -> bytes:
    rule = f'[[repos]]\nmatch = "github.com/acme/*"\nlabel = "{base}"\n' if base else ""
    return f"""[policy]
id = "prop"
default_label = "{default}"
{rule}
[tags]
t-public = "public"
t-internal = "internal"
t-restricted = "restricted"
[owners]
"@acme/pub" = "public"
"@acme/int" = "internal"
"@acme/res" = "restricted"
"x@acme.com" = "restricted"
[content]
secrets = "internal"
""".encode()


label_or_junk = st.sampled_from([*LABELS, "bogus"])
attribute_line = st.tuples(
    st.sampled_from(["*", "*.py", "src/**", "src/", "**/mod.py", "/src/pkg/mod.py", "nope/**"]),
    st.one_of(
        label_or_junk.map(lambda v: f"onbox-label={v}"),
        st.lists(st.sampled_from(TAGS), min_size=1, max_size=3).map(
            lambda t: "onbox-tags=" + ",".join(t)
        ),
        st.just("-onbox-label"),
        st.just("!onbox-tags"),
    ),
).map(lambda t: f"{t[0]} {t[1]}")
owner_line = st.tuples(
    st.sampled_from(["*", "*.py", "/src/", "src/pkg/", "docs/*", "/src/pkg/mod.py"]),
    st.lists(st.sampled_from(OWNERS), max_size=3),
).map(lambda t: " ".join([t[0], *t[1]]))

SIGNALS = {
    "attributes": st.lists(attribute_line, min_size=1, max_size=5),
    "codeowners": st.lists(owner_line, min_size=1, max_size=5),
    "onbox_toml": st.lists(st.sampled_from(TAGS), min_size=1, max_size=3),
    "marker": label_or_junk,
    "secret": st.just(True),
}


def build(root: Path, signals: dict[str, object]) -> Path:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(
        ["git", "-C", str(root), "remote", "add", "origin", "git@github.com:acme/prop.git"],
        check=True,
    )
    target = root / "src" / "pkg" / "mod.py"
    target.parent.mkdir(parents=True)
    lines = []
    if "marker" in signals:
        lines.append(f"# onbox: {signals['marker']}")
    lines.append("x = 1")
    if "secret" in signals:
        lines.append('K = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"')
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if "attributes" in signals:
        (root / ".gitattributes").write_text("\n".join(signals["attributes"]) + "\n", "utf-8")  # type: ignore[arg-type]
    if "codeowners" in signals:
        (root / "CODEOWNERS").write_text("\n".join(signals["codeowners"]) + "\n", "utf-8")  # type: ignore[arg-type]
    if "onbox_toml" in signals:
        tags = ", ".join(f'"{t}"' for t in signals["onbox_toml"])  # type: ignore[attr-defined]
        (root / ".onbox.toml").write_text(f"tags = [{tags}]\n", "utf-8")
    return target


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from([None, *LABELS]),
    default=st.sampled_from(LABELS),
    present=st.fixed_dictionaries({}, optional=SIGNALS),
    extra=st.sampled_from(sorted(SIGNALS)).flatmap(lambda k: SIGNALS[k].map(lambda v: (k, v))),
)
def test_adding_a_repo_local_signal_never_lowers(
    tmp_path_factory: pytest.TempPathFactory,
    base: str | None,
    default: str,
    present: dict[str, object],
    extra: tuple[str, object],
) -> None:
    policy = parse_policy(policy_for(base, default), "prop.toml")
    kind, value = extra
    work = tmp_path_factory.mktemp(f"prop{next(COUNTER)}")
    bare = Classifier(policy).classify_path(build(work / "none", {}))
    before_signals = {k: v for k, v in present.items() if k != kind}
    before = Classifier(policy).classify_path(build(work / "before", before_signals))
    after = Classifier(policy).classify_path(build(work / "after", {**before_signals, kind: value}))
    # Repo-local signals never go below what the policy alone gives …
    assert before.label >= bare.label and after.label >= bare.label
    # … and adding one more kind of signal never lowers the label.
    assert after.label >= before.label, (before.reasons, after.reasons)
    # The policy alone decides the floor: its repo label, else the default.
    assert bare.label.name == (base or default)
