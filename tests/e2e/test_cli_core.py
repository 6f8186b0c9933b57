"""The ``onbox complete``, ``explain`` and ``doctor`` commands as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.model


def onbox(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onbox", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_complete_sample_file_prints_label_destination_and_suggestion(default_model: Path) -> None:
    run = onbox("complete", "examples/billing.py:14:end")
    assert run.returncode == 0, run.stderr
    header = run.stdout.splitlines()[0]
    assert "label: restricted" in header and "destination: on-box" in header
    suggestion = run.stdout.split("-" * 10, 1)[1].strip("-\n ")
    assert suggestion and not suggestion.startswith("(no suggestion")


def test_complete_json_has_timings_and_route(default_model: Path) -> None:
    run = onbox("complete", "--json", "--max-tokens", "16", "examples/billing.py:14:5")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["label"] == "restricted" and data["destination"] == "on-box"
    assert data["model"] == "gemma-3-270m-q4_k_m.gguf"
    assert data["timings"]["pipeline_total"] > 0 and data["outcome"] in ("served", "empty")


@pytest.mark.parametrize(
    "target", ["nope.py:1:1", "examples/billing.py", "examples/billing.py:x:1"]
)
def test_complete_bad_target_is_a_usage_error(target: str) -> None:
    run = onbox("complete", target)
    assert run.returncode == 2
    assert "onbox complete:" in run.stderr


def test_complete_missing_model_is_an_environment_error(tmp_path: Path) -> None:
    run = onbox("complete", "--model", str(tmp_path / "none.gguf"), "examples/billing.py:14:5")
    assert run.returncode == 3
    assert str(tmp_path / "none.gguf") in run.stderr


def test_doctor_reports_model_and_cpu_only_build(default_model: Path) -> None:
    run = onbox("doctor", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    # The model is loaded and decoded once in a child process, never in the CLI's own.
    smoke = report["smokeTest"]
    assert smoke["ok"] is True and smoke["attempts"][-1]["outcome"] == "ok"
    assert report["model"]["sha256"] == smoke["modelSha256"]
    assert report["gpuOffload"] == report["llamaCpp"]["gpuOffload"] == smoke["build"]["gpuOffload"]
    assert report["trustRoot"]["present"] is False
    assert report["policy"]["id"] == "builtin-fail-closed"


def test_explain_shows_route_and_reasons(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.py").write_text("x = 1\n")
    run = onbox("explain", "--json", str(tmp_path / "a.py"))
    assert run.returncode == 0, run.stderr
    (item,) = json.loads(run.stdout)
    assert item["label"] == "restricted" and item["destination"] == "on-box"
    assert item["reasons"] and item["route"][0]["destination"] == "on-box"
    missing = onbox("explain", str(tmp_path / "missing.py"))
    assert missing.returncode == 2
