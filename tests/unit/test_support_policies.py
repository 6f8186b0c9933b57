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
