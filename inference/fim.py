"""Fill-in-the-middle prompt layouts, one per model family.

A code model trained for FIM sees the text before and after the cursor wrapped in
special tokens and generates the middle. The layouts below are the ones each family
documents; the tokens are read from the GGUF (``tokenizer.ggml.fim_pre_token_id`` and
friends, exposed by llama.cpp as ``llama_vocab_fim_pre/suf/mid``) so that a marker is
always one special token, never a string the tokenizer might split.

| family          | layout                                                    | order |
| --------------- | --------------------------------------------------------- | ----- |
| qwen2.5-coder   | ``<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>``          | PSM   |
| starcoder2      | ``<fim_prefix>P<fim_suffix>S<fim_middle>``                | PSM   |
| codegemma       | ``<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>``          | PSM   |
| codellama       | ``<PRE> P <SUF>S <MID>``                                  | PSM   |
| deepseek-coder  | ``<｜fim▁begin｜>P<｜fim▁hole｜>S<｜fim▁end｜>``           | PSM   |
| codestral       | ``[SUFFIX]S[PREFIX]P``                                    | SPM   |

Models without FIM tokens get a plain prefix prompt; the suffix is then only used to
trim the output (see :mod:`onbox.inference.postprocess`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FimFormat:
    """One family's FIM layout: marker texts and their order."""

    family: str
    prefix_marker: str
    suffix_marker: str
    middle_marker: str  # empty for SPM layouts that end with the prefix
    order: str = "psm"  # "psm": prefix, suffix, middle; "spm": suffix, prefix
    space_after_markers: bool = False  # CodeLlama puts a space after <PRE> and before <SUF>/<MID>
    stop_texts: tuple[str, ...] = ()

    def render(self, prefix: str, suffix: str) -> str:
        """The prompt as text (what a tokenizer with these special tokens would see)."""
        if self.order == "spm":
            return f"{self.suffix_marker}{suffix}{self.prefix_marker}{prefix}{self.middle_marker}"
        if self.space_after_markers:
            return (
                f"{self.prefix_marker} {prefix} {self.suffix_marker}{suffix} {self.middle_marker}"
            )
        return f"{self.prefix_marker}{prefix}{self.suffix_marker}{suffix}{self.middle_marker}"


FAMILIES: dict[str, FimFormat] = {
    "qwen2.5-coder": FimFormat(
        "qwen2.5-coder",
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        stop_texts=("<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|im_end|>"),
    ),
    "starcoder2": FimFormat(
        "starcoder2",
        "<fim_prefix>",
        "<fim_suffix>",
        "<fim_middle>",
        stop_texts=("<|endoftext|>", "<file_sep>"),
    ),
    "codegemma": FimFormat(
        "codegemma",
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        stop_texts=("<|file_separator|>", "<eos>"),
    ),
    "codellama": FimFormat(
        "codellama", "<PRE>", "<SUF>", "<MID>", space_after_markers=True, stop_texts=("<EOT>",)
    ),
    "deepseek-coder": FimFormat(
        "deepseek-coder",
        "<｜fim▁begin｜>",
        "<｜fim▁hole｜>",
        "<｜fim▁end｜>",
        stop_texts=("<|EOT|>", "<｜end▁of▁sentence｜>"),
    ),
    "codestral": FimFormat(
        "codestral", "[PREFIX]", "[SUFFIX]", "", order="spm", stop_texts=("</s>",)
    ),
}


@dataclass(frozen=True)
class FimTokens:
    """Token ids of the FIM markers in one model's vocabulary (-1 when absent)."""

    pre: int
    suf: int
    mid: int

    @property
    def complete(self) -> bool:
        """Whether the model has the prefix and suffix markers (middle is optional for SPM)."""
        return self.pre >= 0 and self.suf >= 0


def _strip_sentencepiece(text: str) -> str:
    """A marker's text without SentencePiece's leading word marker (CodeLlama's ``▁<PRE>``).

    Only a leading ``▁`` is dropped: DeepSeek-Coder's markers (``<｜fim▁begin｜>``) have
    one inside that is part of the marker.
    """
    return text.strip().lstrip("▁").strip()


def identify_family(
    metadata: Mapping[str, str], tokens: FimTokens, token_text: Callable[[int], str]
) -> FimFormat | None:
    """Name the FIM layout of a model from its GGUF metadata and marker token texts.

    Returns ``None`` when the model has no usable FIM tokens: no prefix or suffix marker,
    or no middle marker for a layout that needs one (every known one but Codestral's).
    """
    if not tokens.complete:
        return None
    fmt = _known_family(metadata, tokens, token_text)
    if fmt.order == "psm" and tokens.mid < 0:
        return None
    return fmt


def _known_family(
    metadata: Mapping[str, str], tokens: FimTokens, token_text: Callable[[int], str]
) -> FimFormat:
    pre = _strip_sentencepiece(token_text(tokens.pre))
    suf = _strip_sentencepiece(token_text(tokens.suf))
    name = (metadata.get("general.name", "") + " " + metadata.get("general.basename", "")).lower()
    if pre == "[PREFIX]" and suf == "[SUFFIX]":
        return FAMILIES["codestral"]
    if pre == "<PRE>":
        return FAMILIES["codellama"]
    if pre == "<｜fim▁begin｜>":
        return FAMILIES["deepseek-coder"]
    if pre == "<fim_prefix>":
        return FAMILIES["starcoder2"]
    if pre == "<|fim_prefix|>":
        return FAMILIES["codegemma"] if "gemma" in name else FAMILIES["qwen2.5-coder"]
    # An unknown family that still declares FIM tokens: use its own markers in PSM order.
    mid = _strip_sentencepiece(token_text(tokens.mid)) if tokens.mid >= 0 else ""
    return FimFormat("gguf-declared", pre, suf, mid)


def fim_token_layout(
    fmt: FimFormat,
    tokens: FimTokens,
    prefix_tokens: Sequence[int],
    suffix_tokens: Sequence[int],
    bos: Sequence[int] = (),
) -> list[int]:
    """The prompt as token ids, each marker a single special token.

    Raises :class:`ValueError` for a PSM layout without a middle token id, which
    :func:`identify_family` never returns.
    """
    out = list(bos)
    if fmt.order == "spm":
        out += [tokens.suf, *suffix_tokens, tokens.pre, *prefix_tokens]
        if tokens.mid >= 0 and fmt.middle_marker:
            out.append(tokens.mid)
        return out
    if tokens.mid < 0:
        raise ValueError(f"{fmt.family} needs a FIM middle token and this vocabulary has none")
    return [*out, tokens.pre, *prefix_tokens, tokens.suf, *suffix_tokens, tokens.mid]


def trim_to_budget(
    prefix_tokens: Sequence[int],
    suffix_tokens: Sequence[int],
    prefix_budget: int,
    suffix_budget: int,
) -> tuple[list[int], list[int]]:
    """Keep the last ``prefix_budget`` prefix tokens and the first ``suffix_budget`` suffix tokens.

    Budget a side does not use is lent to the other, so short suffixes leave more room
    for the prefix that matters most. A negative budget counts as zero.
    """
    prefix_budget, suffix_budget = max(0, prefix_budget), max(0, suffix_budget)
    spare_suffix = max(0, suffix_budget - len(suffix_tokens))
    spare_prefix = max(0, prefix_budget - len(prefix_tokens))
    p_budget = prefix_budget + spare_suffix
    s_budget = suffix_budget + spare_prefix
    kept_prefix = list(prefix_tokens[-p_budget:]) if p_budget > 0 else []
    kept_suffix = list(suffix_tokens[:s_budget]) if s_budget > 0 else []
    return kept_prefix, kept_suffix
