"""``onbox eval``'s cost column: the policy's ``[destinations.NAME.cost]`` prices each
destination the way ``onbox journal stats --cost`` does, and ``--price`` overrides it."""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from onbox.audit.cost import spend
from onbox.classification.policy_model import DestinationCost
from tests.support.policies import PolicyBuilder
from tests.support.recording_server import RecordingServer

CODE = '''\
def area(width, height):
    """The area."""
    result = width * height
    return result


def perimeter(width, height):
    total = 2 * (width + height)
    return total
'''

COSTS = """
[destinations.cloud.cost]
input_per_mtok = 3.0
output_per_mtok = 15.0

[destinations.eu.cost]
currency = "EUR"
input_per_mtok = 2.5
output_per_mtok = 10.0
"""


def test_a_cloud_price_is_the_policys_per_million_tokens() -> None:
    from onbox.server.evaluation import Price

    price = Price.from_policy(DestinationCost(input_per_mtok=3.0, output_per_mtok=15.0))
    assert (price.per_million_in, price.per_million_out) == (3.0, 15.0)
    assert price.cost(2_000, 100) == pytest.approx(0.0075)
    assert (price.currency, price.source) == ("USD", "policy")


def test_self_hosted_hardware_is_priced_by_machine_time_like_journal_stats() -> None:
    from onbox.server.evaluation import Price

    gpu = DestinationCost(
        currency="EUR",
        hardware_cost=9500,
        lifetime_years=3,
        power_watts=350,
        electricity_per_kwh=0.3,
        utilisation=0.25,
        prefill_tokens_per_second=4000,
        decode_tokens_per_second=60,
    )
    price = Price.from_policy(gpu)
    for tokens_in, tokens_out in ((1_234, 56), (40_000, 0), (0, 900)):
        expected = spend(gpu, tokens_in, tokens_out)
        assert Decimal(str(price.cost(tokens_in, tokens_out))) == pytest.approx(expected)
    assert price.currency == "EUR"


def test_each_destination_is_priced_from_the_policy_and_price_overrides(
    tmp_path: Path, onbox_env: dict[str, str]
) -> None:
    from onbox.inference.fim_tasks import sample_tasks
    from onbox.server.eval_report import results_table
    from onbox.server.evaluation import Evaluation, Price
    from onbox.server.settings import Settings
    from onbox.server.wiring import Wiring

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "shapes.py").write_text(CODE)
    with RecordingServer() as us, RecordingServer() as eu:
        us.set_reply("result")
        eu.set_reply("result")
        policy = (
            PolicyBuilder("eval-cost", default_label="public", extra=COSTS)
            .destination(
                "cloud",
                kind="openai",
                base_url=f"{us.url}/v1",
                model="m",
                clearance="public",
                timeout=5.0,
            )
            .destination(
                "eu",
                kind="openai",
                base_url=f"{eu.url}/v1",
                model="m",
                clearance="public",
                timeout=5.0,
            )
            .route("public", "cloud", "eu")
            .write(tmp_path / "policy.toml")
        )
        settings = Settings()
        settings.policy.path = str(policy)
        wiring = Wiring(settings)
        try:
            evaluation = Evaluation(wiring, ["cloud", "eu"])
            prices = evaluation.policy_prices()
            assert set(prices) == {"cloud", "eu"}
            tasks = sample_tasks([repo], seed=0, limit=4)
            # what `onbox eval --price eu=1,2` passes: the flag wins over the policy
            override = {**prices, "eu": Price(1.0, 2.0)}
            report = evaluation.run(tasks, prices=override)
            evaluation.close()
        finally:
            wiring.stop()
    data = report.to_json()
    rows = {r["destination"]: r for r in data["results"] if r["label"] == "all"}
    cloud, eu_row = rows["cloud"], rows["eu"]
    assert cloud["scored"] == len(tasks) and cloud["tokensIn"] > 0
    assert cloud["cost"] == pytest.approx(
        (cloud["tokensIn"] * 3.0 + cloud["tokensOut"] * 15.0) / 1e6
    )
    assert (cloud["currency"], cloud["costSource"]) == ("USD", "policy")
    assert eu_row["cost"] == pytest.approx((eu_row["tokensIn"] + eu_row["tokensOut"] * 2) / 1e6)
    assert (eu_row["currency"], eu_row["costSource"]) == ("USD", "--price")
    table = results_table(data)
    assert table is not None
