"""The verifier's re-encoding (orjson where installed) writes exactly the canonical bytes.

:func:`canonical_json_fast` uses orjson for plain values; these tests compare it with
the writer's :func:`canonical_json` and with the standard library's encoder on the
values where they could differ: floats, every ASCII and control character, integers at
the safe limit, key order. And a line that no UTF-8 can carry is refused, not a crash.
"""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onbox.audit import canonical
from onbox.audit.canonical import (
    MAX_SAFE_INT,
    canonical_json,
    canonical_json_fast,
    fast_loads,
    plain_float,
)
from onbox.audit.check import parse_entry
from onbox.audit.errors import CanonicalEncodingError

pytest.importorskip("orjson")


def _stdlib(value: Any) -> bytes:
    return canonical._dumps(value).encode("utf-8")


def _same_three_ways(value: Any) -> None:
    expected = canonical_json(value)
    parsed, plain = fast_loads(expected)
    assert plain
    assert canonical_json_fast(parsed, plain) == expected == _stdlib(parsed)


def test_plain_floats_are_written_as_the_writer_writes_them() -> None:
    rng = random.Random(20261201)
    values = [
        math.nextafter(10.0**k, toward) * sign
        for k in range(-4, 17)
        for toward in (0.0, math.inf)
        for sign in (1, -1)
    ]
    values += [
        struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(20_000)
    ]
    values += [rng.choice((1, -1)) * 10 ** rng.uniform(-4.2, 16.2) for _ in range(20_000)]
    values += [float(f"{rng.randint(1, 10**17)}e{rng.randint(-21, 0)}") for _ in range(20_000)]
    plain = [v for v in values if math.isfinite(v) and plain_float(v)]
    assert len(plain) > 30_000
    for chunk in range(0, len(plain), 500):
        _same_three_ways({"x": plain[chunk : chunk + 500]})


def test_every_ascii_character_is_escaped_alike() -> None:
    text = "".join(chr(c) for c in range(128))
    _same_three_ways({"s": text, text: 1, "a": [text[i : i + 3] for i in range(0, 128, 3)]})


def test_integers_keys_and_literals_alike() -> None:
    _same_three_ways(
        {
            "z": [0, -1, 1, MAX_SAFE_INT, -MAX_SAFE_INT, 2**31, -(2**63) // 2**11],
            "A": {"b": None, "a": True, "B": False, "_": {}, "": []},
            "a": "x",
        }
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(max_codepoint=127)),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(max_codepoint=127)), children, max_size=4)
    ),
    max_leaves=16,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_fast_reencoding_matches_the_writer(value: object) -> None:
    encoded = canonical_json(value)
    parsed, plain = fast_loads(encoded)
    assert canonical_json_fast(parsed, plain) == encoded


def test_a_line_with_a_lone_surrogate_is_refused_not_a_crash() -> None:
    line = json.dumps({"v": 1, "body": {"s": "\ud800"}}).encode("ascii")
    assert b"\\ud800" in line
    parsed, plain = fast_loads(line)
    assert plain
    with pytest.raises(CanonicalEncodingError):
        canonical_json_fast(parsed, plain)
    entry = {
        "v": 1,
        "seq": 1,
        "time": "2026-11-20T09:00:00.000000Z",
        "kind": "egress",
        "body": {"s": "\ud800"},
        "prev": "0" * 64,
        "key": "k",
        "hash": "0" * 64,
        "sig": "AA==",
    }
    _, what = parse_entry(json.dumps(entry, separators=(",", ":")).encode("ascii"))
    assert what is not None and "canonically" in what
