"""``onbox eval`` as a user runs it: the real default model through the worker, and a run
stopped with Ctrl-C that still reports what finished."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from tests.support.policies import PolicyBuilder
from tests.support.recording_server import RecordingServer

CODE = '''\
"""Temperature conversions."""


def celsius_to_fahrenheit(celsius):
    """Degrees Celsius in Fahrenheit."""
    return celsius * 9 / 5 + 32


def fahrenheit_to_celsius(fahrenheit):
    """Degrees Fahrenheit in Celsius."""
    return (fahrenheit - 32) * 5 / 9


def clamp(value, low, high):
    if value < low:
        return low
    if value > high:
        return high
    return value
'''

RATES = ("exactMatch", "editSimilarity", "emptyRate", "parsesAfter", "brokeParse")


def _repo(root: Path) -> Path:
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "convert.py").write_text(CODE)
    return root


@pytest.mark.model
@pytest.mark.slow
def test_eval_three_tasks_with_the_default_model(
    tmp_path: Path, onbox_env: dict[str, str], default_model: Path
) -> None:
    repo = _repo(tmp_path / "repo")
    page = tmp_path / "report.html"
    run = subprocess.run(
        [sys.executable, "-m", "onbox", "eval", str(repo), "--limit", "3", "--seed", "1",
         "--max-tokens", "24", "--json", "--html", str(page)],
        capture_output=True, text=True, env=onbox_env, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["version"] == 1 and data["interrupted"] is False
    assert data["tasks"] == data["completedTasks"] == 3
    assert data["destinations"] == [
        {
            "name": "on-box",
            "kind": "llama-cpp",
            "clearance": "restricted",
            "model": "gemma-3-270m-q4_k_m.gguf",
        }
    ]
    # no policy: the built-in one labels everything restricted, served on-box
    rows = {(r["destination"], r["label"]): r for r in data["results"]}
    assert set(rows) == {("on-box", "restricted"), ("on-box", "all")}
    row = rows["on-box", "restricted"]
    assert row["tasks"] == row["scored"] == 3 and row["notAllowed"] == row["fallbacks"] == 0
    for key in RATES:
        assert row[key] is None or 0.0 <= row[key] <= 1.0, key
    assert row["editSimilarity"] is not None
    assert 0 < row["latencyP50"] <= row["latencyP95"]
    assert row["tokensIn"] > 0 and 0 <= row["tokensOut"] <= 3 * 24
    assert (row["cost"], row["costSource"]) == (0.0, "on-box") and row["acceptedChars"] >= 0
    items = data["items"]
    assert {i["kind"] for i in items} == {"line-start", "mid-line", "block"}
    for item in items:
        assert item["status"] == "scored" and item["servedBy"] == "on-box"
        assert item["path"] == str(repo / "convert.py") and item["line"] >= 1
        assert 0.0 <= item["editSimilarity"] <= 1.0 and item["tokensIn"] > 0
        assert "answer" not in item and "expected" not in item  # code only with --include-text
    timing = data["timing"]
    assert timing["completionSeconds"] > 0 and timing["totalSeconds"] >= timing["completionSeconds"]
    assert timing["overhead"] is not None and timing["overhead"] >= 0
    assert "<svg" in page.read_text()
    # the same seed gives the same tasks
    again = subprocess.run(
        [sys.executable, "-m", "onbox", "eval", str(repo), "--limit", "3", "--seed", "1",
         "--max-tokens", "1", "--json"],
        capture_output=True, text=True, env=onbox_env, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert [i["id"] for i in json.loads(again.stdout)["items"]] == [i["id"] for i in items]


def _policy(url: str, path: Path) -> Path:
    """Public by default, routed to a loopback cloud before the on-box model."""
    return (
        PolicyBuilder("eval-e2e", default_label="public")
        .destination(
            "cloud",
            kind="openai",
            base_url=f"{url}/v1",
            model="coder",
            clearance="public",
            timeout=10.0,
        )
        .route("public", "cloud")
        .write(path)
    )


def test_ctrl_c_keeps_the_finished_tasks(tmp_path: Path, onbox_env: dict[str, str]) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    (repo / "textwrap.py").write_text((stdlib / "textwrap.py").read_text())
    with RecordingServer() as cloud:
        cloud.set_reply("value")
        cloud.set_latency(0.3)
        policy = _policy(cloud.url, tmp_path / "policy.toml")
        proc = subprocess.Popen(
            [sys.executable, "-m", "onbox", "eval", str(repo),
             "--destinations", "cloud", "--policy", str(policy), "--limit", "40",
             "--model", str(tmp_path / "no-model.gguf"), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=onbox_env,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while len(cloud.requests) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    data = json.loads(out)
    assert data["interrupted"] is True and data["tasks"] == 40
    assert 2 <= data["completedTasks"] < 40
    assert len(data["items"]) >= data["completedTasks"]
    assert all(i["status"] == "scored" and i["servedBy"] == "cloud" for i in data["items"])
    (row,) = [r for r in data["results"] if r["label"] == "public"]
    assert row["scored"] == len(data["items"])
