"""FIM layouts per model family, family identification, and prefix/suffix token budgets.

The expected layouts are the vendors' own documentation, written out literally here so
that a change to :data:`onbox.inference.fim.FAMILIES` cannot silently agree with itself:

* Qwen2.5-Coder (model card): ``<|fim_prefix|>{P}<|fim_suffix|>{S}<|fim_middle|>``
* StarCoder2 (bigcode model card): ``<fim_prefix>{P}<fim_suffix>{S}<fim_middle>``
* CodeGemma (Google model card): ``<|fim_prefix|>{P}<|fim_suffix|>{S}<|fim_middle|>``
* CodeLlama (meta-llama ``infilling_prompt_tokens``): ``<PRE> {P} <SUF>{S} <MID>``
* DeepSeek-Coder (README): ``<｜fim▁begin｜>{P}<｜fim▁hole｜>{S}<｜fim▁end｜>``
* Codestral (mistral-common ``encode_fim``): ``[SUFFIX]{S}[PREFIX]{P}``, suffix first

The real-vocabulary tests write small GGUF vocabularies with the ``gguf`` package and
load them vocab-only with llama.cpp, so they check what llama.cpp itself reads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onbox.inference.fim import (
    FAMILIES,
    FimFormat,
    FimTokens,
    fim_token_layout,
    identify_family,
    trim_to_budget,
)

P = "def add(a, b):\n    "
S = "\n\nprint(add(1, 2))\n"

DOCUMENTED_RENDER = {
    "qwen2.5-coder": f"<|fim_prefix|>{P}<|fim_suffix|>{S}<|fim_middle|>",
    "starcoder2": f"<fim_prefix>{P}<fim_suffix>{S}<fim_middle>",
    "codegemma": f"<|fim_prefix|>{P}<|fim_suffix|>{S}<|fim_middle|>",
    "codellama": f"<PRE> {P} <SUF>{S} <MID>",
    "deepseek-coder": f"<｜fim▁begin｜>{P}<｜fim▁hole｜>{S}<｜fim▁end｜>",
    "codestral": f"[SUFFIX]{S}[PREFIX]{P}",
}

#: Per family: the marker texts as they appear in the family's vocabulary (CodeLlama's
#: SentencePiece pieces carry a leading ``▁``), the model name in GGUF metadata, and
#: whether the vocabulary has a middle marker.
VOCAB_MARKERS: dict[str, tuple[tuple[str, str, str], str]] = {
    "qwen2.5-coder": (("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"), "Qwen2.5 Coder 1.5B"),
    "starcoder2": (("<fim_prefix>", "<fim_suffix>", "<fim_middle>"), "starcoder2-3b"),
    "codegemma": (("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"), "codegemma-2b"),
    "codellama": (("▁<PRE>", "▁<SUF>", "▁<MID>"), "CodeLlama 7b hf"),
    "deepseek-coder": (
        ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
        "deepseek-coder-1.3b-base",
    ),
    "codestral": (("[PREFIX]", "[SUFFIX]", "[MIDDLE]"), "Codestral 22B v0.1"),
}


def _text_lookup(texts: dict[int, str]) -> Any:
    return lambda token_id: texts[token_id]


# -- layouts ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(DOCUMENTED_RENDER))
def test_render_matches_the_vendor_documentation(family: str) -> None:
    assert FAMILIES[family].render(P, S) == DOCUMENTED_RENDER[family]


def test_every_family_is_covered() -> None:
    assert set(FAMILIES) == set(DOCUMENTED_RENDER)


@pytest.mark.parametrize("family", sorted(DOCUMENTED_RENDER))
def test_token_layout_has_one_id_per_marker_in_documented_order(family: str) -> None:
    fmt = FAMILIES[family]
    tokens = FimTokens(pre=901, suf=902, mid=903)
    prefix_ids, suffix_ids = [11, 12, 13], [21, 22]
    layout = fim_token_layout(fmt, tokens, prefix_ids, suffix_ids, bos=[1])
    if family == "codestral":
        assert layout == [1, 902, 21, 22, 901, 11, 12, 13]
    else:
        assert layout == [1, 901, 11, 12, 13, 902, 21, 22, 903]


@pytest.mark.parametrize("family", sorted(DOCUMENTED_RENDER))
def test_token_layout_order_follows_render_order(family: str) -> None:
    """The id sequence and the text rendering put the parts in the same order."""
    fmt = FAMILIES[family]
    tokens = FimTokens(pre=1001, suf=1002, mid=1003)
    names = {1001: "pre", 1002: "suf", 1003: "mid", 7: "P", 8: "S"}
    by_tokens = [names[t] for t in fim_token_layout(fmt, tokens, [7], [8])]
    text = fmt.render("\x01", "\x02")
    markers = {
        fmt.prefix_marker: "pre",
        fmt.suffix_marker: "suf",
        **({fmt.middle_marker: "mid"} if fmt.middle_marker else {}),
    }
    positions = [(text.index(m), n) for m, n in markers.items()]
    positions += [(text.index("\x01"), "P"), (text.index("\x02"), "S")]
    assert [n for _, n in sorted(positions)] == by_tokens


def test_empty_prefix_and_suffix_still_carry_every_marker() -> None:
    fmt = FAMILIES["qwen2.5-coder"]
    assert fmt.render("", "") == "<|fim_prefix|><|fim_suffix|><|fim_middle|>"
    assert fim_token_layout(fmt, FimTokens(5, 6, 7), [], []) == [5, 6, 7]


def test_spm_and_psm_orders() -> None:
    assert FAMILIES["codestral"].order == "spm"
    assert FAMILIES["codestral"].middle_marker == ""
    assert {f.order for name, f in FAMILIES.items() if name != "codestral"} == {"psm"}


def test_spm_layout_appends_a_middle_only_when_the_format_has_one() -> None:
    spm_with_middle = FimFormat("x", "<P>", "<S>", "<M>", order="spm")
    tokens = FimTokens(1, 2, 3)
    assert fim_token_layout(spm_with_middle, tokens, [10], [20]) == [2, 20, 1, 10, 3]
    assert spm_with_middle.render("p", "s") == "<S>s<P>p<M>"
    assert fim_token_layout(FAMILIES["codestral"], tokens, [10], [20]) == [2, 20, 1, 10]
    assert fim_token_layout(FAMILIES["codestral"], FimTokens(1, 2, -1), [10], [20]) == [
        2,
        20,
        1,
        10,
    ]


def test_psm_layout_refuses_a_missing_middle_token() -> None:
    with pytest.raises(ValueError, match="middle"):
        fim_token_layout(FAMILIES["starcoder2"], FimTokens(1, 2, -1), [10], [20])


def test_stop_texts_name_each_familys_end_of_middle() -> None:
    assert "<|endoftext|>" in FAMILIES["qwen2.5-coder"].stop_texts
    assert "<|file_separator|>" in FAMILIES["codegemma"].stop_texts
    assert "<EOT>" in FAMILIES["codellama"].stop_texts
    assert "<|endoftext|>" in FAMILIES["starcoder2"].stop_texts


# -- identification ----------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(VOCAB_MARKERS))
def test_identify_family_from_marker_texts_and_name(family: str) -> None:
    (pre, suf, mid), name = VOCAB_MARKERS[family]
    texts = {100: pre, 101: suf, 102: mid}
    fmt = identify_family({"general.name": name}, FimTokens(100, 101, 102), _text_lookup(texts))
    assert fmt is not None
    assert fmt.family == family


def test_codegemma_is_told_from_qwen_by_basename_too() -> None:
    texts = {1: "<|fim_prefix|>", 2: "<|fim_suffix|>", 3: "<|fim_middle|>"}
    meta = {"general.name": "Model", "general.basename": "CodeGemma"}
    fmt = identify_family(meta, FimTokens(1, 2, 3), _text_lookup(texts))
    assert fmt is FAMILIES["codegemma"]
    fmt = identify_family({}, FimTokens(1, 2, 3), _text_lookup(texts))
    assert fmt is FAMILIES["qwen2.5-coder"]


@pytest.mark.parametrize(
    "tokens",
    [FimTokens(-1, -1, -1), FimTokens(5, -1, 7), FimTokens(-1, 6, 7)],
    ids=["none", "no-suffix", "no-prefix"],
)
def test_no_fim_tokens_means_no_layout(tokens: FimTokens) -> None:
    texts = {5: "<fim_prefix>", 6: "<fim_suffix>", 7: "<fim_middle>"}
    assert identify_family({"general.name": "starcoder2"}, tokens, _text_lookup(texts)) is None


def test_psm_family_without_a_middle_token_is_not_fim() -> None:
    texts = {5: "<fim_prefix>", 6: "<fim_suffix>"}
    assert identify_family({}, FimTokens(5, 6, -1), _text_lookup(texts)) is None


def test_codestral_needs_no_middle_token() -> None:
    texts = {5: "[PREFIX]", 6: "[SUFFIX]"}
    assert identify_family({}, FimTokens(5, 6, -1), _text_lookup(texts)) is FAMILIES["codestral"]


def test_unknown_family_falls_back_to_its_own_markers_in_psm_order() -> None:
    texts = {40: "<|begin_fill|>", 41: "<|fill_after|>", 42: "▁<|fill_here|>"}
    fmt = identify_family({"general.name": "mystery"}, FimTokens(40, 41, 42), _text_lookup(texts))
    assert fmt is not None
    assert fmt.family == "gguf-declared"
    assert fmt.order == "psm"
    assert fmt.render("a", "b") == "<|begin_fill|>a<|fill_after|>b<|fill_here|>"
    assert fim_token_layout(fmt, FimTokens(40, 41, 42), [1], [2]) == [40, 1, 41, 2, 42]


# -- real llama.cpp vocabularies ----------------------------------------------------------


def _write_vocab(path: Path, name: str, markers: Sequence[str]) -> tuple[int, int, int]:
    """A tiny SentencePiece vocabulary declaring ``markers`` as FIM control tokens."""
    import gguf

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256  # unknown, control, byte
    for piece in ["▁", "▁def", "▁x", "d", "e", "f", "x", "(", ")", ":"]:
        tokens.append(piece)
        types.append(1)
    ids = []
    for marker in markers:
        ids.append(len(tokens))
        tokens.append(marker)
        types.append(3)
    scores = [-float(len(t)) if kind == 1 else 0.0 for t, kind in zip(tokens, types, strict=True)]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(256)
    writer.add_embedding_length(64)
    writer.add_block_count(1)
    writer.add_feed_forward_length(128)
    writer.add_head_count(1)
    writer.add_head_count_kv(1)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    keys = gguf.Keys.Tokenizer
    for key, token_id in zip((keys.FIM_PRE_ID, keys.FIM_SUF_ID, keys.FIM_MID_ID), ids, strict=True):
        writer.add_uint32(key, token_id)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return ids[0], ids[1], ids[2]


def _load_vocab(path: Path) -> Any:
    llama_cpp = pytest.importorskip("llama_cpp")
    return llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)


def _read_fim(llm: Any) -> FimTokens:
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    return FimTokens(
        int(llama_cpp.llama_vocab_fim_pre(vocab)),
        int(llama_cpp.llama_vocab_fim_suf(vocab)),
        int(llama_cpp.llama_vocab_fim_mid(vocab)),
    )


def _assert_single_tokens(llm: Any, tokens: FimTokens, fmt: FimFormat) -> None:
    """Each marker's vocabulary text is one special token, and it is the family's marker."""
    for token_id, marker in (
        (tokens.pre, fmt.prefix_marker),
        (tokens.suf, fmt.suffix_marker),
        (tokens.mid, fmt.middle_marker),
    ):
        if token_id < 0 or not marker:
            continue
        text: str = llm._model.token_get_text(token_id)
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == [token_id]
        # without special parsing the same text is ordinary characters, never the marker
        assert token_id not in llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        assert text.lstrip("▁") == marker


@pytest.mark.parametrize("family", sorted(VOCAB_MARKERS))
def test_written_gguf_vocab_is_read_by_llama_cpp(family: str, tmp_path: Path) -> None:
    (pre, suf, mid), name = VOCAB_MARKERS[family]
    path = tmp_path / f"{family}.gguf"
    ids = _write_vocab(path, name, (pre, suf, mid))
    llm = _load_vocab(path)
    tokens = _read_fim(llm)
    assert (tokens.pre, tokens.suf, tokens.mid) == ids
    fmt = identify_family(llm.metadata, tokens, llm._model.token_get_text)
    assert fmt is not None
    assert fmt.family == family
    _assert_single_tokens(llm, tokens, fmt)
    layout = fim_token_layout(fmt, tokens, [300], [301], bos=[int(llm.token_bos())])
    assert layout[0] == 1
    assert layout.count(tokens.pre) == layout.count(tokens.suf) == 1


def _reference_vocab_dir() -> Path | None:
    candidates = [
        os.environ.get("ONBOX_VOCAB_DIR", ""),
        "/tmp/llbuild/src/llama_cpp_python-0.3.36/vendor/llama.cpp/models",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.mark.parametrize(
    ("file_name", "family"),
    [
        ("ggml-vocab-starcoder.gguf", "starcoder2"),
        ("ggml-vocab-deepseek-coder.gguf", "deepseek-coder"),
        ("ggml-vocab-qwen2.gguf", "qwen2.5-coder"),
    ],
)
def test_llama_cpp_reference_vocab(file_name: str, family: str) -> None:
    """llama.cpp's own test vocabularies, when a source checkout is at hand."""
    directory = _reference_vocab_dir()
    if directory is None or not (directory / file_name).is_file():
        pytest.skip(f"{file_name} not found: set ONBOX_VOCAB_DIR to llama.cpp's models/ folder")
    llm = _load_vocab(directory / file_name)
    tokens = _read_fim(llm)
    fmt = identify_family(llm.metadata, tokens, llm._model.token_get_text)
    if not tokens.complete:
        # llama.cpp's trimmed qwen2 test vocabulary has no FIM tokens: plain prompting
        assert fmt is None
        pytest.skip(f"{file_name} declares no FIM tokens")
    assert fmt is not None
    assert fmt.family == family
    _assert_single_tokens(llm, tokens, fmt)


# -- token budgets -------------------------------------------------------------------------


def test_budget_keeps_prefix_tail_and_suffix_head() -> None:
    prefix, suffix = list(range(100)), list(range(1000, 1100))
    kept_p, kept_s = trim_to_budget(prefix, suffix, 10, 5)
    assert kept_p == list(range(90, 100))
    assert kept_s == [1000, 1001, 1002, 1003, 1004]


def test_unused_suffix_budget_is_lent_to_the_prefix() -> None:
    kept_p, kept_s = trim_to_budget(list(range(100)), [7, 8], 10, 5)
    assert kept_s == [7, 8]
    assert kept_p == list(range(87, 100))


def test_unused_prefix_budget_is_lent_to_the_suffix() -> None:
    kept_p, kept_s = trim_to_budget([1, 2], list(range(100)), 5, 10)
    assert kept_p == [1, 2]
    assert kept_s == list(range(13))


@pytest.mark.parametrize(
    ("prefix_budget", "suffix_budget", "expected"),
    [
        (0, 0, ([], [])),
        (0, 3, ([], [20, 21, 22])),  # the suffix uses its whole budget: nothing to lend
        (3, 0, ([7, 8, 9], [])),
        (-5, -5, ([], [])),
        (-5, 2, ([], [20, 21])),
    ],
)
def test_zero_and_negative_budgets(
    prefix_budget: int, suffix_budget: int, expected: tuple[list[int], list[int]]
) -> None:
    prefix, suffix = [1, 2, 3, 4, 5, 6, 7, 8, 9], [20, 21, 22]
    assert trim_to_budget(prefix, suffix, prefix_budget, suffix_budget) == expected


def test_empty_inputs() -> None:
    assert trim_to_budget([], [], 10, 10) == ([], [])
    assert trim_to_budget([], [1, 2, 3], 2, 0) == ([], [1, 2])


@given(
    prefix=st.lists(st.integers(0, 50), max_size=60),
    suffix=st.lists(st.integers(0, 50), max_size=60),
    prefix_budget=st.integers(-5, 80),
    suffix_budget=st.integers(-5, 80),
)
def test_budget_properties(
    prefix: list[int], suffix: list[int], prefix_budget: int, suffix_budget: int
) -> None:
    kept_p, kept_s = trim_to_budget(prefix, suffix, prefix_budget, suffix_budget)
    total = max(0, prefix_budget) + max(0, suffix_budget)
    assert kept_p == prefix[len(prefix) - len(kept_p) :]  # a tail of the prefix
    assert kept_s == suffix[: len(kept_s)]  # a head of the suffix
    # the budget is never exceeded and never left unused while there is text to fill it
    assert len(kept_p) + len(kept_s) == min(total, len(prefix) + len(suffix))
    # a side within its own budget is never cut
    if len(prefix) <= max(0, prefix_budget):
        assert kept_p == prefix
    if len(suffix) <= max(0, suffix_budget):
        assert kept_s == suffix
