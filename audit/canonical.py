"""Canonical JSON for hashing: RFC 8785 (JCS) for every value the journal writes.

Rules (see ``docs/journal.md``): object keys sorted by their UTF-16 code units, no
insignificant whitespace, strings with only ``"``, ``\\`` and control characters escaped
(``\\b \\t \\n \\f \\r`` or ``\\u00xx``), UTF-8 output, integers beyond
2**53 only when written exactly as their double would be, and floats written the way
ECMAScript's ``Number.prototype.toString`` writes them. NaN and infinities are rejected.

The fast path uses :func:`json.dumps`, which already produces JCS output when the value
holds only ASCII object keys, safe integers and "plain" floats (:func:`plain_float`);
anything else goes through a small encoder. :func:`fast_loads` parses a line and says
whether the fast path applies, which keeps verification cheap.

Verifying is parse, re-encode, hash (and a signature). Where ``orjson`` is installed (the
collector's extra), :func:`canonical_json_fast` re-encodes plain values with it, about
3x faster than ``json.dumps``: for plain values both write the same bytes (ASCII keys
sorted alike, the same string escapes, integers alike, and the shortest round-trip
digits of plain floats; the property tests compare it with :func:`canonical_json`).
Parsing stays with the standard library, which also flags the values that are not plain.
The writer's :func:`canonical_json` never uses orjson.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from typing import Any

from onbox.audit.errors import CanonicalEncodingError

try:  # an optional accelerator of verification (see the module docstring)
    import orjson
except ImportError:  # pragma: no cover - the standard library is only slower
    orjson = None  # type: ignore[assignment]

MAX_SAFE_INT = 2**53

_dumps = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode


def canonical_json(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 encoding of ``value``.

    Raises :class:`CanonicalEncodingError` for values JSON cannot carry exactly.
    """
    try:
        if _is_plain(value):
            return _dumps(value).encode("utf-8")
        return _encode(value).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        if isinstance(exc, CanonicalEncodingError):
            raise
        raise CanonicalEncodingError(
            f"cannot encode a journal value canonically: {exc}; pass only JSON types "
            "(str, int, finite float, bool, None, list, dict with str keys)"
        ) from exc


def plain_float(value: float) -> bool:
    """True when ``repr`` already writes ``value`` as RFC 8785 does.

    That holds for finite, non-integral floats with 1e-4 <= |value| < 1e16: repr then
    prints the shortest round-trip digits without an exponent, exactly as ECMAScript.
    """
    magnitude = abs(value)
    return 1e-4 <= magnitude < 1e16 and not value.is_integer()


def _is_plain(value: Any) -> bool:
    """True when json.dumps already yields JCS: plain floats, ASCII keys, safe ints."""
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -MAX_SAFE_INT <= value <= MAX_SAFE_INT
    if isinstance(value, float):
        return plain_float(value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and k.isascii() and _is_plain(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    return False


def _encode(value: Any) -> str:
    if value is None or isinstance(value, bool) or isinstance(value, str):
        return _dumps(value)
    if isinstance(value, int):
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return str(value)
        # JSON numbers are IEEE doubles (RFC 8785): a big integer is fine only if it is
        # exactly how JCS writes the double nearest to it.
        as_float = float(value) if abs(value) < 2**1024 else math.inf
        if math.isfinite(as_float) and format_number(as_float) == str(value):
            return str(value)
        raise CanonicalEncodingError(
            f"integer {value} cannot be held exactly by a JSON number; pass it as a string"
        )
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, Mapping):
        items = []
        for key in value:
            if not isinstance(key, str):
                raise CanonicalEncodingError(f"object key {key!r} is not a string")
            items.append(key)
        items.sort(key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(_dumps(k) + ":" + _encode(value[k]) for k in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    raise CanonicalEncodingError(f"{type(value).__name__} is not a JSON type")


def format_number(value: float) -> str:
    """Write a float as ECMAScript ``Number.prototype.toString`` does (RFC 8785 §3.2.2.3)."""
    if not math.isfinite(value):
        raise CanonicalEncodingError(f"{value} is not a finite number; JSON cannot carry it")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    # value = 0.digits * 10**n  (n as in ECMA-262 Number::toString)
    if whole == "0":
        n = -(len(frac) - len(frac.lstrip("0")))
    else:
        n = len(whole)
    n += int(exp_text) if exp_text else 0
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        exp = n - 1
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if exp >= 0 else "-")
        text += str(abs(exp))
    return sign + text


_scan = threading.local()  # per-thread "saw a number json.dumps would not write canonically"


def _parse_float(text: str) -> float:
    value = float(text)
    if not plain_float(value):
        _scan.odd = True
    return value


def _parse_int(text: str) -> int:
    value = int(text)
    if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        _scan.odd = True
    return value


_decoder = json.JSONDecoder(parse_float=_parse_float, parse_int=_parse_int)


def fast_loads(raw: bytes) -> tuple[Any, bool]:
    """Parse one JSON line; also say whether ``json.dumps`` re-encodes it canonically."""
    _scan.odd = False
    value = _decoder.decode(raw.decode("utf-8"))
    return value, not _scan.odd and raw.isascii()


def canonical_json_fast(value: Any, plain: bool) -> bytes:
    """:func:`canonical_json`, skipping the scan when ``plain`` is already known."""
    if not plain:
        return canonical_json(value)
    if orjson is not None:
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # e.g. a lone surrogate or deep nesting: the standard library decides
    try:
        return _dumps(value).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: no UTF-8 encoding exists
        raise CanonicalEncodingError(f"cannot encode a journal value canonically: {exc}") from exc
