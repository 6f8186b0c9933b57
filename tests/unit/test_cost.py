"""``onbox journal stats --cost``: a journal with known token counts gives exact figures.

The journal is a real signed one (:func:`onbox.audit.open_journal`) holding ``completion``
entries shaped as the pipeline writes them; the prices come from a policy parsed from
TOML. Every expected figure below is worked out by hand from ``docs/cost.md``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from onbox.audit import iter_entries, open_journal
from onbox.audit.cost import (
    CostError,
    cost_report,
    spend,
    tally_entries,
    tally_journal,
    tally_lines,
)
from onbox.classification.policy import parse_policy
from onbox.classification.policy_model import DestinationCost, PolicyError
from onbox.server.cli import main

POLICY = """
[policy]
id = "cost-test"
labels = ["public", "internal", "restricted"]

[destinations.bedrock]
kind = "bedrock"
clearance = "internal"
region = "eu-west-1"
model = "anthropic.claude-3-5-haiku-20241022-v1:0"
cost = { input_per_mtok = 3.0, output_per_mtok = 15.0 }

[destinations.gemini]
kind = "vertex"
clearance = "public"
project = "p"
location = "europe-west4"
model = "gemini-2.5-flash"
cost = { input_per_mtok = 0.30, output_per_mtok = 2.50 }

[destinations.gpu]
kind = "openai"
clearance = "internal"
base_url = "https://vllm.corp.example/v1"

[destinations.gpu.cost]
hardware = "L40S"
hardware_cost = 26280      # 1.00 an hour over 3 years
lifetime_years = 3
power_watts = 500          # 0.5 kW x 0.20 = 0.10 an hour
electricity_per_kwh = 0.20
utilisation = 0.5
prefill_tokens_per_second = 1000
decode_tokens_per_second = 100
"""

# (destination, kind, label, repo, tokens in, tokens out)
COMPLETIONS = [
    ("bedrock", "bedrock", "internal", "github.com/acme/pay", 400_000, 20_000),
    ("bedrock", "bedrock", "internal", "github.com/acme/pay", 600_000, 30_000),
    ("gemini", "vertex", "public", "github.com/[a]cme/web", 2_000_000, 100_000),
    ("gpu", "openai", "internal", "github.com/acme/pay", 900_000, 90_000),
    ("on-box", "llama-cpp", "restricted", None, 500, 10),
]


def body(name: str, kind: str, label: str, repo: str | None, tin: int, tout: int) -> dict[str, Any]:
    """A ``completion`` body as ``server/pipeline.py`` writes it."""
    return {
        "id": f"c-{name}-{tin}",
        "label": label,
        "repo": repo,
        "reasons": [{"kind": "repo-tag", "label": "restricted", "detail": "decoy"}],
        "destination": {"name": name, "kind": kind, "model": "m", "clearance": label},
        "tokensIn": tin,
        "tokensOut": tout,
        "outcome": "served",
    }


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    directory = tmp_path / "journal"
    with open_journal(directory, device_key_dir=tmp_path / "keys") as j:
        for row in COMPLETIONS:
            j.append("egress", {"destination": row[0], "label": row[2], "bytes": 100})
            j.append("completion", body(*row))
        j.append("acceptance", {"completionId": "c-gemini-2000000"})
    return directory


def prices() -> dict[str, DestinationCost]:
    policy = parse_policy(POLICY.encode(), "cost.toml")
    return {n: d.cost for n, d in policy.destinations.items() if d.cost is not None}


def test_spend_per_destination_label_repo_and_day_is_exact(journal: Path) -> None:
    report = cost_report(tally_journal(journal, workers=1), prices())
    spend_of = {k: v.spend for k, v in report.by_destination.items()}
    # 1.0M in x 3 + 50k out x 15, per million; 2M x 0.30 + 100k x 2.50;
    # gpu: 900k/1000 + 90k/100 = 1800 busy seconds x 1.10 an hour / (3600 x 0.5)
    assert spend_of == {
        "bedrock": Decimal("3.75"),
        "gemini": Decimal("0.85"),
        "gpu": Decimal("1.1"),
        "on-box": Decimal(0),
    }
    assert report.total.spend == Decimal("5.70") and report.total.requests == 5
    assert (report.total.tokens_in, report.total.tokens_out) == (3_900_500, 240_010)
    assert {k: v.spend for k, v in report.by_label.items()} == {
        "internal": Decimal("4.85"),
        "public": Decimal("0.85"),
        "restricted": Decimal(0),
    }
    assert report.by_label["restricted"].unpriced == 1 and report.unpriced == ["on-box"]
    assert {k: v.spend for k, v in report.by_repo.items()} == {
        "github.com/acme/pay": Decimal("4.85"),
        "github.com/[a]cme/web": Decimal("0.85"),
        "-": Decimal(0),
    }
    [(_day, usage)] = report.by_day.items()
    assert usage.spend == Decimal("5.70") and report.days == 1


def test_break_even_per_label_against_the_hardware(journal: Path) -> None:
    report = cost_report(tally_journal(journal, workers=1), prices())
    internal, public = report.break_even
    # one day scaled to a 30-day month: 30M in / 1.5M out -> 30000 + 15000 busy seconds,
    # one machine (capacity 720 h x 3600 x 0.5), 1.10 x 720 a month
    assert (internal.label, internal.hardware) == ("internal", "gpu (L40S)")
    assert (internal.tokens_in_month, internal.tokens_out_month) == (30_000_000, 1_500_000)
    assert internal.cloud_month == Decimal("112.50")
    assert internal.self_hosted_month == Decimal("792.0") and internal.machines == 1
    assert internal.busy_share == Decimal(45_000) / Decimal(720 * 3600)
    assert public.cloud_month == Decimal("25.50") and public.self_hosted_month == Decimal("792.0")
    assert "cloud is cheaper" in internal.text("USD") and "792.00 USD/month" in internal.text("USD")


def test_more_volume_than_one_machine_needs_more_machines() -> None:
    tally = {("bedrock", "bedrock", "internal", "-", "2026-11-01"): [1, 0, 20_000_000]}
    [line] = cost_report(tally, prices(), days=30).break_even
    # 20M out / 100 per second = 200000 s; one machine gives 720 x 3600 x 0.5 = 1296000 s
    assert line.machines == 1
    tally = {("bedrock", "bedrock", "internal", "-", "2026-11-01"): [1, 0, 200_000_000]}
    [line] = cost_report(tally, prices(), days=30).break_even
    assert line.machines == 2 and line.self_hosted_month == Decimal("1584.0")
    assert line.cloud_month == Decimal(3000)  # 200M x 15 per million
    assert "gpu (L40S) is cheaper" in line.text("USD")


def test_days_since_and_lines_that_are_not_completions() -> None:
    def line(time: str, kind: str, tin: int) -> bytes:
        entry = {
            "kind": kind,
            "time": time,
            "body": body("bedrock", "bedrock", "internal", None, tin, 0),
        }
        return json.dumps(entry, separators=(",", ":")).encode()

    lines = [
        line("2026-11-01T10:00:00.000000Z", "completion", 1_000_000),
        line("2026-11-03T10:00:00.000000Z", "completion", 2_000_000),
        line("2026-11-03T11:00:00.000000Z", "egress", 9_000_000),
        b'not json but mentions "kind":"completion"',
    ]
    report = cost_report(tally_lines(lines), prices())
    assert report.days == 3
    assert {d: u.spend for d, u in report.by_day.items()} == {
        "2026-11-01": Decimal(3),
        "2026-11-03": Decimal(6),
    }
    later = tally_lines(lines, since="2026-11-02T00:00:00.000000Z")
    assert cost_report(later, prices()).total.spend == Decimal(6)


def test_parsed_entries_give_the_same_tally(journal: Path) -> None:
    """A collector holding parsed entries prices them the same way."""
    assert tally_entries(iter_entries(journal)) == tally_journal(journal, workers=1)


def test_mixed_currencies_are_refused() -> None:
    euro = DestinationCost(currency="EUR", input_per_mtok=1.0)
    with pytest.raises(CostError, match="EUR, USD"):
        cost_report({}, {**prices(), "eu": euro})


def test_policy_cost_tables_are_validated() -> None:
    bad = POLICY.replace("decode_tokens_per_second = 100", "")
    with pytest.raises(PolicyError, match="decode_tokens_per_second"):
        parse_policy(bad.encode(), "cost.toml")
    with pytest.raises(PolicyError, match="utilisation"):
        parse_policy(POLICY.replace("utilisation = 0.5", "utilisation = 1.5").encode(), "c.toml")
    assert spend(DestinationCost(input_per_mtok=0.1), 10, 0) == Decimal("0.000001")


def test_cli_prints_the_report_as_json(
    journal: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # one table row per line, so the text can be searched
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    argv = ["journal", "stats", "--dir", str(journal), "--cost", "--policy", str(policy)]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"]["spend"] == "5.7" and out["byLabel"]["internal"]["spend"] == "4.85"
    assert out["breakEven"][0]["selfHostedPerMonth"] == "792"
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "5.70 USD" in text and "break-even" in text and "no price for on-box" in text
    assert "github.com/[a]cme/web" in text and "[destinations.NAME.cost]" in text
