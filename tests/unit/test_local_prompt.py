"""Prompt building of the on-box destination with the real default model.

Prompts are built with the model's tokenizer only (``vocab_only``: no weights, no decode
in the pytest process). Generations — few and a few tokens long — run in a model worker,
so a native fault fails one test instead of ending the run. The point is the prompt
(window anchoring, budgets, KV reuse, odd text), not the output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onbox.inference.destination import CancelToken, CompletionRequest
from onbox.inference.fim import FAMILIES, FimTokens
from onbox.inference.local import (
    WINDOW_ANCHOR_LINES,
    LlamaCppDestination,
    ModelSettings,
    common_prefix_length,
)
from onbox.inference.worker_client import WorkerDestination

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def dest(default_model: Path) -> Iterator[LlamaCppDestination]:
    """The default model's tokenizer, loaded once; each test gets the original settings back."""
    destination = LlamaCppDestination(
        ModelSettings(path=str(default_model), context_size=4096), vocab_only=True
    )
    destination.load()
    original = destination.settings
    yield destination
    destination.settings = original


@pytest.fixture
def settings_reset(dest: LlamaCppDestination) -> Iterator[None]:
    original = dest.settings
    yield
    dest.settings = original


def _code(lines: int, tag: str = "") -> str:
    """A Python file of about ``lines`` lines, three lines per function."""
    return "".join(
        f"def {tag}func_{i}(a, b):\n    return a * {i} + b\n\n" for i in range(lines // 3)
    )


def _lines_before(prefix: str, window: str) -> int:
    assert prefix.endswith(window)
    head = prefix[: len(prefix) - len(window)]
    assert head == "" or head.endswith("\n"), "the window must start at a line start"
    return head.count("\n")


def _prompt(dest: LlamaCppDestination, prefix: str, suffix: str = "") -> list[int]:
    return [int(t) for t in dest.build_prompt(CompletionRequest(prefix=prefix, suffix=suffix))]


def _budget(dest: LlamaCppDestination) -> int:
    s = dest.settings
    return int(min(max(64, s.context_size - 64 - 8), s.prefix_tokens + s.suffix_tokens))


@pytest.fixture(scope="module")
def worker(default_model: Path) -> Iterator[WorkerDestination]:
    """The same model generating in a model worker (never in this process)."""
    destination = WorkerDestination(ModelSettings(path=str(default_model), context_size=4096))
    destination.load()
    yield destination
    destination.close()


# -- pure helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "n"),
    [([], [], 0), ([1, 2, 3], [1, 2, 4], 2), ([1, 2], [1, 2, 3], 2), ([5], [6], 0), ((1,), [1], 1)],
)
def test_common_prefix_length(a: list[int], b: list[int], n: int) -> None:
    assert common_prefix_length(a, b) == n
    assert common_prefix_length(b, a) == n


# -- window and budgets -----------------------------------------------------------------------


def test_plain_prompt_is_bos_then_the_prefix_tail(dest: LlamaCppDestination) -> None:
    assert dest.fim_format is None, "the default model has no FIM tokens: plain prompting"
    src = _code(3000)
    prompt = _prompt(dest, src)
    llm: Any = dest._llm
    assert prompt[0] == llm.token_bos()
    assert prompt.count(llm.token_bos()) == 1
    text = bytes(llm.detokenize(prompt[1:])).decode("utf-8")
    assert src.endswith(text)
    assert len(prompt) - 1 <= _budget(dest)
    assert len(prompt) - 1 > _budget(dest) // 2, "the window should use most of its budget"


def test_window_starts_on_an_anchored_line(dest: LlamaCppDestination) -> None:
    src = _code(3000)
    budget = _budget(dest)
    window = dest._window_prefix(src, budget)
    assert _lines_before(src, window) % WINDOW_ANCHOR_LINES == 0
    assert len(dest._tokenize(window)) <= budget
    # the next anchor up would also fit: the window is the largest anchored one
    earlier = "\n".join(src.split("\n")[_lines_before(src, window) - WINDOW_ANCHOR_LINES :])
    assert len(dest._tokenize(earlier)) > budget


def test_short_file_is_taken_whole(dest: LlamaCppDestination) -> None:
    src = _code(60)
    assert dest._window_prefix(src, _budget(dest)) == src


def test_typing_at_the_end_keeps_the_prompt_prefix(dest: LlamaCppDestination) -> None:
    """Each keystroke extends the previous prompt, so llama.cpp can reuse its KV cache."""
    src = _code(3000) + "def tail(x):\n    "
    budget = _budget(dest)
    prev = _prompt(dest, src)
    prev_start = _lines_before(src, dest._window_prefix(src, budget))
    kept = 0
    for ch in "total = x * 2\n    return total\n":
        src += ch
        prompt = _prompt(dest, src)
        start = _lines_before(src, dest._window_prefix(src, budget))
        if start == prev_start:
            # only the last token or two (re-merged by the tokenizer) may differ
            assert common_prefix_length(prev, prompt) >= len(prev) - 2
            kept += 1
        else:  # the window moved on by whole anchor blocks, never by single lines
            assert start > prev_start
            assert (start - prev_start) % WINDOW_ANCHOR_LINES == 0
        prev, prev_start = prompt, start
    assert kept >= 20, "the window moved on almost every keystroke"


def test_window_is_anchored_for_whitespace_heavy_files(dest: LlamaCppDestination) -> None:
    src = "".join(" " * 60 + f"x{i}\n" for i in range(3000))
    window = dest._window_prefix(src, _budget(dest))
    assert _lines_before(src, window) % WINDOW_ANCHOR_LINES == 0


@pytest.mark.parametrize(
    ("prefix_tokens", "suffix_tokens", "context_size"),
    [(1536, 256, 4096), (600, 100, 4096), (1536, 256, 1024), (300, 60, 4096)],
)
def test_prompt_respects_the_token_budget(
    dest: LlamaCppDestination,
    settings_reset: None,
    prefix_tokens: int,
    suffix_tokens: int,
    context_size: int,
) -> None:
    dest.settings = dataclasses.replace(
        dest.settings,
        prefix_tokens=prefix_tokens,
        suffix_tokens=suffix_tokens,
        context_size=context_size,
    )
    prompt = _prompt(dest, _code(3000), "\n\nprint(func_1(1, 2))\n")
    assert 1 < len(prompt) <= 1 + _budget(dest)


def test_small_budget_still_gives_context(dest: LlamaCppDestination, settings_reset: None) -> None:
    dest.settings = dataclasses.replace(dest.settings, prefix_tokens=100, suffix_tokens=28)
    prompt = _prompt(dest, _code(3000))
    assert len(prompt) - 1 >= 32


def test_fim_prompt_layout_and_budgets(
    dest: LlamaCppDestination, settings_reset: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The FIM path with the real tokenizer; the default model has no FIM tokens of its own,
    so three of its unused control-token ids stand in for the markers."""
    pre, suf, mid = 6, 7, 8  # <unused0..2>: control tokens plain text never produces
    monkeypatch.setattr(dest, "_fim", FAMILIES["starcoder2"])
    monkeypatch.setattr(dest, "_fim_tokens", FimTokens(pre, suf, mid))
    dest.settings = dataclasses.replace(dest.settings, prefix_tokens=400, suffix_tokens=50)
    suffix = _code(300, tag="after_")
    prompt = _prompt(dest, _code(3000), suffix)
    llm: Any = dest._llm
    assert prompt[0] == llm.token_bos()
    assert prompt[1] == pre and prompt[-1] == mid
    assert prompt.count(pre) == prompt.count(suf) == prompt.count(mid) == 1
    i = prompt.index(suf)
    prefix_part, suffix_part = prompt[2:i], prompt[i + 1 : -1]
    assert 0 < len(prefix_part) <= 400
    # the suffix's head: its own 50 tokens plus whatever the prefix window left unused
    assert len(suffix_part) >= 50
    assert len(prefix_part) + len(suffix_part) <= 400 + 50
    assert suffix.startswith(bytes(llm.detokenize(suffix_part)).decode("utf-8"))
    assert _code(3000).endswith(bytes(llm.detokenize(prefix_part)).decode("utf-8"))


# -- KV reuse -----------------------------------------------------------------------------


def test_extended_prompt_evaluates_only_the_new_tokens(
    dest: LlamaCppDestination, worker: WorkerDestination
) -> None:
    """KV reuse survives the move to the worker: typing on evaluates only the new tokens."""
    base = "# kv reuse check\n" + _code(60, tag="kv_") + "def tail(x):\n    "
    cold = CompletionRequest(prefix=base, suffix="", max_tokens=4, temperature=0.0)
    started = worker.generations_started
    completion = worker.complete(cold, CancelToken())
    cold_prompt = dest.build_prompt(cold)  # the worker builds the same prompt
    assert completion.tokens_in == len(cold_prompt)
    # A new file shares at most a few leading tokens (BOS, a comment's "#") with whatever
    # the shared worker ran before: nearly all of it is evaluated.
    assert worker.last_prompt_tokens_evaluated >= len(cold_prompt) - 8

    warm = dataclasses.replace(cold, prefix=base + "total = x * 2 + len(str(x))")
    warm_prompt = dest.build_prompt(warm)
    new_tokens = len(warm_prompt) - common_prefix_length(cold_prompt, warm_prompt)
    completion = worker.complete(warm, CancelToken())
    evaluated = worker.last_prompt_tokens_evaluated
    assert completion.timings["prompt_tokens_evaluated"] == evaluated
    assert 1 <= evaluated <= new_tokens + 1
    assert evaluated < len(warm_prompt) // 10
    assert worker.generations_started == started + 2


# -- odd text -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "suffix"),
    [
        ("a = '\x00\x00'\nb = ", "\n"),
        ("s = '\ud800'\nt = '\udfff' + ", "\ud83d"),
        ("\x00", "\x00\ud800"),
        ("\ud83d", ""),
        ("", ""),
    ],
    ids=["nul", "lone-surrogates", "only-nul", "high-surrogate", "empty"],
)
def test_nul_and_lone_surrogates_tokenize(
    dest: LlamaCppDestination, prefix: str, suffix: str
) -> None:
    llm: Any = dest._llm
    prompt = _prompt(dest, prefix, suffix)
    assert prompt[0] == llm.token_bos()
    assert all(0 <= t < llm.n_vocab() for t in prompt)
    assert prompt == _prompt(dest, prefix.replace("\x00", ""), suffix), "NUL bytes are dropped"


def test_generation_on_odd_text(dest: LlamaCppDestination, worker: WorkerDestination) -> None:
    request = CompletionRequest(
        prefix="s = '\ud800\x00'\nt = ", suffix="\udfff", max_tokens=2, temperature=0.0
    )
    completion = worker.complete(request, CancelToken())
    assert isinstance(completion.text, str)
    assert completion.tokens_in == len(dest.build_prompt(request))
