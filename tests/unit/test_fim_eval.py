"""``onbox eval``'s parts: task sampling with tree-sitter, the metrics, and labels ruling
which destination may see a task (with a real OpenAI-compatible destination on loopback)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from onbox.inference.fim_metrics import (
    Sample,
    accepted_chars,
    edit_similarity,
    exact_match,
    levenshtein,
    parses,
    score,
    summarise,
)
from onbox.inference.fim_tasks import candidate_spans, sample_tasks, source_files
from tests.support.policies import PolicyBuilder
from tests.support.recording_server import RecordingServer

PY = '''\
import os


def area(width, height):
    """The area."""
    result = width * height
    return result


class Shape:
    def scale(self, factor):
        if factor <= 0:
            raise ValueError("factor must be positive")
        self.width = self.width * factor
        return self  # fluent
'''

JS = """\
function add(a, b) {
  const total = a + b;
  return total;
}
"""


def _repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _spans(language: str, text: str) -> dict[str, set[str]]:
    data = text.encode()
    return {
        kind: {data[s.start : s.end].decode() for s in spans}
        for kind, spans in candidate_spans(language, data).items()
    }


# -- sampling ------------------------------------------------------------------------------


def test_block_spans_are_bodies_tree_sitter_finds() -> None:
    blocks = _spans("python", PY)["block"]
    # a function body, docstring included
    assert '"""The area."""\n    result = width * height\n    return result' in blocks
    assert (
        'raise ValueError("factor must be positive")' not in blocks  # a one-line body
    )
    # the method body: from its first statement to the end of its last
    assert any(b.startswith("if factor <= 0:") and b.endswith("return self") for b in blocks)
    js = _spans("javascript", JS)["block"]
    assert js == {"const total = a + b;\n  return total;"}


def test_line_spans_are_whole_one_line_statements_without_trailing_comments() -> None:
    spans = _spans("python", PY)
    assert "result = width * height" in spans["line-start"]
    assert "import os" in spans["line-start"]
    # `return self  # fluent`: the rest of the line holds a comment, so no line task there
    assert not any(s.startswith("return self") for s in spans["line-start"] | spans["mid-line"])
    # mid-line spans start at a token inside the statement and run to its end
    assert "width * height" in spans["mid-line"] and "height" in spans["mid-line"]
    assert not any(s.startswith("The area") for s in spans["mid-line"])  # not in a string
    assert all(not s.startswith(" ") for s in spans["mid-line"])


def test_a_file_that_does_not_parse_gives_no_tasks() -> None:
    assert candidate_spans("python", b"def broken(:\n    return 1\n") == {}


def test_sampling_is_reproducible_by_seed_and_balanced(tmp_path: Path) -> None:
    files = {f"pkg/m{i}.py": PY.replace("area", f"area{i}") for i in range(6)}
    repo = _repo(tmp_path / "repo", {**files, "web/add.js": JS, "notes.txt": "x = 1\n"})
    first = sample_tasks([repo], seed=7, limit=9)
    again = sample_tasks([repo], seed=7, limit=9)
    other = sample_tasks([repo], seed=8, limit=9)
    assert [t.id for t in first] == [t.id for t in again]
    assert [t.id for t in first] != [t.id for t in other]
    assert len(first) == 9 and len({t.id for t in first}) == 9
    assert {t.kind: sum(u.kind == t.kind for u in first) for t in first} == {
        "line-start": 3,
        "mid-line": 3,
        "block": 3,
    }
    for t in first:
        # the hidden span is cut from the file; the document is the file without it
        assert t.text == Path(t.path).read_text()
        assert t.prefix + t.expected + t.suffix == t.text and t.expected.strip()
        assert t.document == t.prefix + t.suffix


def test_sampling_skips_ignored_files_and_takes_several_from_a_small_repo(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo", {"a.py": PY, "gen/big.py": PY, ".gitignore": "gen/\n"})
    assert [p.name for p in source_files(repo)] == ["a.py"]
    tasks = sample_tasks([repo], seed=1, limit=5)
    assert len(tasks) == 5 and {t.path.name for t in tasks} == {"a.py"}


# -- metrics -------------------------------------------------------------------------------


def test_exact_match_ignores_trailing_whitespace_and_first_line_indent_only() -> None:
    assert exact_match("  return x  \n\n", "return x")
    assert exact_match("a\r\n    b\n", "a\n    b")
    assert not exact_match("a\nb", "a\n    b")  # relative indentation matters
    assert not exact_match("return x + 1", "return x")


def test_edit_similarity_and_accepted_chars() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert edit_similarity("abc", "abc") == 1.0
    assert edit_similarity("abc", "abd") == pytest.approx(2 / 3)
    assert edit_similarity("", "") == 1.0 and edit_similarity("xyz", "") == 0.0
    assert edit_similarity("abcdef", "abc") == pytest.approx(0.5)
    assert accepted_chars("return total + 1", "return total") == len("return total")
    assert accepted_chars("x", "y") == 0


def test_parses_after_and_broke() -> None:
    prefix, suffix = "def f(x):\n    ", "\n"
    good = score("return x", "return x + 1", prefix, suffix, "python")
    assert good.parses is True and not good.broke and not good.exact
    bad = score("return (x", "return x", prefix, suffix, "python")
    assert bad.parses is False and bad.broke
    empty = score("  \n", "return x", prefix, suffix, "python")
    assert empty.empty and empty.parses is None and not empty.broke
    assert parses("lua", "whatever") is None  # no grammar: not counted either way


def test_summary_rates_and_percentiles() -> None:
    prefix, suffix = "x = ", "\n"
    samples = [
        Sample(score("1", "1", prefix, suffix, "python"), 1.0, 10, 2),
        Sample(score("2", "1", prefix, suffix, "python"), 2.0, 10, 2),
        Sample(score("", "1", prefix, suffix, "python"), 3.0, 10, 0),
        Sample(score("(", "1", prefix, suffix, "python"), 4.0, 10, 1),
    ]
    s = summarise(samples)
    assert s["tasks"] == 4 and s["exactMatch"] == 0.25 and s["emptyRate"] == 0.25
    assert s["parsesAfter"] == pytest.approx(2 / 3) and s["brokeParse"] == pytest.approx(1 / 3)
    assert s["latencyP50"] == 2.5 and s["latencyP95"] == pytest.approx(3.85)
    assert (s["tokensIn"], s["tokensOut"]) == (40, 5)
    assert summarise([])["exactMatch"] is None


# -- labels rule: "not allowed" ------------------------------------------------------------


def _policy(url: str, path: Path) -> Path:
    """Public by default; public files may go to a loopback cloud, the rest stay on-box."""
    return (
        PolicyBuilder("eval-test", default_label="public")
        .destination(
            "cloud",
            kind="openai",
            base_url=f"{url}/v1",
            model="coder",
            clearance="public",
            timeout=5.0,
        )
        .route("public", "cloud")
        .write(path)
    )


@pytest.fixture
def cloud() -> Iterator[RecordingServer]:
    with RecordingServer() as srv:
        srv.set_reply("result")
        yield srv


def test_restricted_file_is_not_allowed_for_a_public_destination(
    tmp_path: Path, cloud: RecordingServer, onbox_env: dict[str, str]
) -> None:
    from onbox.server.eval_report import not_allowed_lines, render_html
    from onbox.server.evaluation import NOT_ALLOWED, SCORED, Evaluation
    from onbox.server.settings import Settings
    from onbox.server.wiring import Wiring

    repo = _repo(
        tmp_path / "repo",
        {
            "open.py": PY,
            "vault.py": PY.replace("area", "secret_area"),
            ".gitattributes": "vault.py onbox-label=restricted\n",
        },
    )
    policy = _policy(cloud.url, tmp_path / "policy.toml")
    settings = Settings()
    settings.policy.path = str(policy)
    wiring = Wiring(settings)
    try:
        evaluation = Evaluation(wiring, ["cloud"])
        tasks = sample_tasks([repo], seed=0, limit=12)
        assert {t.path.name for t in tasks} == {"open.py", "vault.py"}
        report = evaluation.run(tasks)
        evaluation.close()
    finally:
        wiring.stop()
    by_file = {
        name: [o for o in report.outcomes if o.task.path.name == name]
        for name in ("open.py", "vault.py")
    }
    assert all(o.status == NOT_ALLOWED and o.label == "restricted" for o in by_file["vault.py"])
    assert all("clearance public < restricted" in o.why for o in by_file["vault.py"])
    assert all(o.status == SCORED and o.served_by == "cloud" for o in by_file["open.py"])
    # nothing of the restricted file reached the cloud; every public task did
    bodies = [r.body.decode() for r in cloud.requests]
    assert len(bodies) == len(by_file["open.py"])
    assert not any("secret_area" in b for b in bodies)
    data = report.to_json()
    rows = {(r["destination"], r["label"]): r for r in data["results"]}
    assert rows["cloud", "restricted"]["notAllowed"] == len(by_file["vault.py"])
    assert rows["cloud", "restricted"]["scored"] == 0
    assert rows["cloud", "public"]["scored"] == len(by_file["open.py"])
    listed = not_allowed_lines(data)
    assert len(listed) == len(by_file["vault.py"]) and all("vault.py" in line for line in listed)
    page = render_html(data)
    assert "<svg" in page and "Not allowed" in page and "vault.py" in page


def test_unknown_destination_is_refused_with_the_known_names(onbox_env: dict[str, str]) -> None:
    from onbox.server.evaluation import Evaluation, UnknownDestination
    from onbox.server.settings import Settings
    from onbox.server.wiring import Wiring

    wiring = Wiring(Settings())
    try:
        with pytest.raises(UnknownDestination, match="on-box"):
            Evaluation(wiring, ["corp"])
    finally:
        wiring.stop()


def test_a_failed_destination_is_a_fallback_not_its_answer(
    tmp_path: Path, cloud: RecordingServer, onbox_env: dict[str, str]
) -> None:
    from onbox.server.evaluation import FALLBACK, SCORED, Evaluation
    from onbox.server.settings import Settings
    from onbox.server.wiring import Wiring
    from tests.support.recording_server import Fault

    repo = _repo(tmp_path / "repo", {"open.py": PY})
    policy = _policy(cloud.url, tmp_path / "policy.toml")
    settings = Settings()
    settings.policy.path = str(policy)
    settings.model.path = str(tmp_path / "no-model.gguf")  # the on-box fallback fails too
    wiring = Wiring(settings)
    cloud.push(Fault.STATUS_500)
    try:
        tasks = sample_tasks([repo], seed=0, limit=2)
        evaluation = Evaluation(wiring, ["cloud"])
        report = evaluation.run(tasks)
        evaluation.close()
    finally:
        wiring.stop()
    first, second = report.outcomes
    assert first.status == FALLBACK and first.served_by == "on-box" and first.score is None
    assert "cloud: unavailable" in first.why
    # the circuit is open after the failure, so the next task falls back as well, unscored
    assert second.status in (FALLBACK, SCORED)
    (row,) = [r for r in report.rows() if r["label"] == "public"]
    assert row["fallbacks"] >= 1 and row["scored"] == sum(
        o.status == SCORED for o in report.outcomes
    )


def test_a_pinned_route_keeps_the_routers_own_rules(
    tmp_path: Path, cloud: RecordingServer, onbox_env: dict[str, str]
) -> None:
    """Pinning chooses the destination, nothing else: an expired policy is on-box only."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from onbox.inference.pinned_route import PinnedRouter
    from onbox.inference.routing import Router
    from onbox.server.settings import Settings
    from onbox.server.wiring import Wiring

    repo = _repo(tmp_path / "repo", {"open.py": PY})
    policy = _policy(cloud.url, tmp_path / "policy.toml")
    settings = Settings()
    settings.policy.path = str(policy)
    wiring = Wiring(settings)
    try:
        decision = wiring.service.classify((repo / "open.py").as_uri(), PY, None, "python")
        assert decision.label.name == "public"
        pinned = PinnedRouter(wiring.router, "cloud", wiring.labels)
        assert pinned.refusal(decision) is None
        assert [s.destination for s in pinned.plan(decision)] == ["cloud", "on-box"]
        # the gate sees the pinned copy as the policy in force, so it does not re-route
        pinned.gate.check_policy()
        expired = replace(wiring.router.policy, expires=datetime.now(UTC) - timedelta(seconds=1))
        stale = PinnedRouter(Router(expired, wiring.router.destinations, None), "cloud", None)
        assert "expired" in (stale.refusal(decision) or "")
    finally:
        wiring.router.destinations["cloud"].close()  # type: ignore[attr-defined]
        wiring.stop()
