"""The test policy builder writes policies that load as built."""

from __future__ import annotations

from pathlib import Path

from onbox.classification.policy import load_policy
from tests.support.policies import PolicyBuilder


def test_built_policy_loads_with_its_rules_and_routes(tmp_path: Path) -> None:
    built = (
        PolicyBuilder("built", extra='[content]\nsecrets = "internal"')
        .repo("github.com/acme/docs", "public")
        .destination(
            "cloud",
            kind="openai",
            base_url="https://api.example.com/v1",
            model="m",
            clearance="public",
            fim=True,
            timeout=5.0,
        )
        .route("public", "cloud")
        .write(tmp_path / "policy.toml")
    )
    policy = load_policy(built)
    assert policy.id == "built" and policy.default_label.name == "restricted"
    assert [(r.match, r.label.name) for r in policy.repos] == [("github.com/acme/docs", "public")]
    assert policy.routes["public"] == ("cloud", "on-box")
    assert policy.routes["restricted"] == ("on-box",)
    assert policy.destinations["on-box"].kind == "llama-cpp"
    assert policy.destinations["cloud"].clearance.name == "public"


def test_extra_policy_keys_go_into_the_policy_table(tmp_path: Path) -> None:
    """Keys given to ``policy()`` land in ``[policy]`` (a second ``[policy]`` would not parse)."""
    built = PolicyBuilder("keys").policy(expires="2099-01-31T00:00:00Z").write(tmp_path / "p.toml")
    expires = load_policy(built).expires
    assert expires is not None and (expires.year, expires.month) == (2099, 1)
