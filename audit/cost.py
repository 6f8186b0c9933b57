"""What completions cost, from the journal and the policy's prices: ``journal stats --cost``.

Pure arithmetic over ``completion`` entries (their ``tokensIn``/``tokensOut``, as the
service reported them) and the ``[destinations.NAME.cost]`` tables of the policy. The
formulas, documented for admins in ``docs/cost.md``::

    per-token service   spend = tokens_in × input_per_mtok / 10⁶ + tokens_out × output_per_mtok / 10⁶
    hardware            hourly = hardware_cost / (lifetime_years × 8760) + power_watts / 1000 × electricity_per_kwh
                        busy_s = tokens_in / prefill_tokens_per_second + tokens_out / decode_tokens_per_second
                        spend  = busy_s × hourly / (3600 × utilisation)

Break-even, per label served by per-token services: the label's volume over the report
window is scaled to a 30-day month; serving that volume on each hardware destination
needs ``ceil(busy_s_month / (720 h × 3600 × utilisation))`` machines (at least one), and
costs ``machines × hourly × 720`` a month whatever the load. Whichever is lower wins.

All money is :class:`~decimal.Decimal`, so a journal with known token counts gives exact
figures. Reading is the slow part: lines that are not ``completion`` entries are skipped
before parsing, segments are tallied in parallel processes, and ``orjson`` parses the
lines when it is installed (three times faster than the standard library).

Errors: :class:`CostError` (a :class:`ValueError`) when the prices mix currencies.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from onbox.audit.entry import format_time
from onbox.audit.segments import list_segments

logger = logging.getLogger(__name__)

MILLION = Decimal(1_000_000)
HOURS_PER_YEAR = Decimal(8760)
MONTH_DAYS = 30
MONTH_HOURS = Decimal(MONTH_DAYS * 24)
_COMPLETION = b'"kind":"completion"'

try:  # an optional accelerator: parsing is most of the report's time
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - the standard library is only slower
    _loads = json.loads  # type: ignore[assignment]

#: ``(destination, destination kind, label, repo, day)``
Key = tuple[str, str, str, str, str]


class CostError(ValueError):
    """The prices cannot be added up (e.g. they mix currencies)."""


class DestinationCost(Protocol):
    """A destination's prices (the policy's ``DestinationCost``; audit does not import it)."""

    @property
    def currency(self) -> str: ...
    @property
    def input_per_mtok(self) -> float: ...
    @property
    def output_per_mtok(self) -> float: ...
    @property
    def hardware_cost(self) -> float: ...
    @property
    def lifetime_years(self) -> float: ...
    @property
    def power_watts(self) -> float: ...
    @property
    def electricity_per_kwh(self) -> float: ...
    @property
    def utilisation(self) -> float: ...
    @property
    def prefill_tokens_per_second(self) -> float: ...
    @property
    def decode_tokens_per_second(self) -> float: ...
    @property
    def hardware(self) -> str: ...
    @property
    def self_hosted(self) -> bool: ...


@dataclass
class Usage:
    """Completions and tokens, what the priced ones cost, and how many had no price."""

    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    spend: Decimal = Decimal(0)
    unpriced: int = 0  # completions served by a destination the policy gives no price

    def add(self, requests: int, tokens_in: int, tokens_out: int, spend: Decimal | None) -> None:
        """Fold one tally in (``spend`` None: its destination has no price)."""
        self.requests += requests
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        if spend is None:
            self.unpriced += requests
        else:
            self.spend += spend

    def to_json(self) -> dict[str, Any]:
        """Counts, and spend as an exact decimal string."""
        return {
            "requests": self.requests,
            "tokensIn": self.tokens_in,
            "tokensOut": self.tokens_out,
            "spend": exact(self.spend),
            "unpriced": self.unpriced,
        }


@dataclass(frozen=True)
class BreakEven:
    """One label's cloud volume, priced as it is and as it would be on one hardware option."""

    label: str
    hardware: str  # the destination name, with its ``hardware`` description
    tokens_in_month: int
    tokens_out_month: int
    cloud_month: Decimal
    self_hosted_month: Decimal
    machines: int
    busy_share: Decimal  # of the machines' paid hours

    def text(self, currency: str) -> str:
        """The sentence an admin reads."""
        cheaper = "cloud" if self.cloud_month <= self.self_hosted_month else self.hardware
        return (
            f"at this volume ({_mega(self.tokens_in_month)} in / "
            f"{_mega(self.tokens_out_month)} out tokens a month), serving {self.label} on "
            f"{self.hardware} costs {_money(self.self_hosted_month, currency)}/month "
            f"({self.machines} machine{'s' if self.machines != 1 else ''}, "
            f"{self.busy_share:.1%} busy) vs {_money(self.cloud_month, currency)}/month in the "
            f"cloud: {cheaper} is cheaper"
        )

    def to_json(self) -> dict[str, Any]:
        """Exact figures as strings."""
        return {
            "label": self.label,
            "hardware": self.hardware,
            "tokensInPerMonth": self.tokens_in_month,
            "tokensOutPerMonth": self.tokens_out_month,
            "cloudPerMonth": exact(self.cloud_month),
            "selfHostedPerMonth": exact(self.self_hosted_month),
            "machines": self.machines,
            "busyShare": exact(self.busy_share),
        }


@dataclass
class CostReport:
    """Spend per destination, label, repo and day, and the break-even lines."""

    currency: str
    days: int  # the report window, in days
    total: Usage = field(default_factory=Usage)
    by_destination: dict[str, Usage] = field(default_factory=dict)
    by_label: dict[str, Usage] = field(default_factory=dict)
    by_repo: dict[str, Usage] = field(default_factory=dict)
    by_day: dict[str, Usage] = field(default_factory=dict)
    unpriced: list[str] = field(default_factory=list)  # destinations without a price
    break_even: list[BreakEven] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form."""

        def table(rows: Mapping[str, Usage]) -> dict[str, Any]:
            return {k: v.to_json() for k, v in sorted(rows.items())}

        return {
            "currency": self.currency,
            "days": self.days,
            "total": self.total.to_json(),
            "byDestination": table(self.by_destination),
            "byLabel": table(self.by_label),
            "byRepo": table(self.by_repo),
            "byDay": table(self.by_day),
            "unpriced": self.unpriced,
            "breakEven": [b.to_json() for b in self.break_even],
        }


# -- prices ---------------------------------------------------------------------------


def _d(value: float) -> Decimal:
    return Decimal(repr(value))  # the number as written in the policy, not its binary float


def hourly_cost(cost: DestinationCost) -> Decimal:
    """What one hardware machine costs an hour: depreciation plus power."""
    depreciation = _d(cost.hardware_cost) / (_d(cost.lifetime_years) * HOURS_PER_YEAR)
    return depreciation + _d(cost.power_watts) / 1000 * _d(cost.electricity_per_kwh)


def busy_seconds(cost: DestinationCost, tokens_in: int, tokens_out: int) -> Decimal:
    """Seconds of machine time that ``tokens_in`` prompt and ``tokens_out`` generated take."""
    return Decimal(tokens_in) / _d(cost.prefill_tokens_per_second) + Decimal(tokens_out) / _d(
        cost.decode_tokens_per_second
    )


def spend(cost: DestinationCost, tokens_in: int, tokens_out: int) -> Decimal:
    """What ``tokens_in`` and ``tokens_out`` cost on a destination priced by ``cost``."""
    if cost.self_hosted:
        busy = busy_seconds(cost, tokens_in, tokens_out)
        return busy * hourly_cost(cost) / (3600 * _d(cost.utilisation))
    return (
        Decimal(tokens_in) * _d(cost.input_per_mtok)
        + Decimal(tokens_out) * _d(cost.output_per_mtok)
    ) / MILLION


# -- reading the journal ----------------------------------------------------------------


def tally_lines(lines: Iterable[bytes], since: str | None = None) -> dict[Key, list[int]]:
    """``[completions, tokens_in, tokens_out]`` per key, from raw journal lines."""
    tally: dict[Key, list[int]] = {}
    for raw in lines:
        if _COMPLETION not in raw:
            continue  # cheaper than parsing every egress, acceptance and header line
        parsed = _parse(raw)
        if parsed is not None and (since is None or parsed[0] >= since):
            _fold(tally, *parsed)
    return tally


def tally_entries(entries: Iterable[Mapping[str, Any]]) -> dict[Key, list[int]]:
    """The same tally from entries already parsed (a collector's store, ``iter_entries``)."""
    tally: dict[Key, list[int]] = {}
    for entry in entries:
        body = entry.get("body")
        if entry.get("kind") == "completion" and isinstance(body, dict):
            _fold(tally, str(entry.get("time", "")), body)
    return tally


def _fold(tally: dict[Key, list[int]], when: str, body: Mapping[str, Any]) -> None:
    dest = body.get("destination")
    if isinstance(dest, dict):
        name, kind = str(dest.get("name", "?")), str(dest.get("kind", "?"))
    else:
        name, kind = str(dest or "?"), str(body.get("kind", "?"))
    key = (name, kind, str(body.get("label") or "?"), str(body.get("repo") or "-"), when[:10])
    row = tally.get(key)
    if row is None:
        row = tally[key] = [0, 0, 0]
    row[0] += 1
    row[1] += _int(body.get("tokensIn"))
    row[2] += _int(body.get("tokensOut"))


def _parse(raw: bytes) -> tuple[str, dict[str, Any]] | None:
    """``(time, body)`` of a ``completion`` line, or None for any other line."""
    try:
        entry = _loads(raw)
    except ValueError:
        return None
    if not isinstance(entry, dict) or entry.get("kind") != "completion":
        return None
    body = entry.get("body")
    return str(entry.get("time", "")), body if isinstance(body, dict) else {}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _tally_file(args: tuple[str, str | None]) -> dict[Key, list[int]]:
    path, since = args
    with open(path, "rb") as handle:
        return tally_lines(handle, since)


def _bundle_lines(path: Path) -> Iterator[bytes]:
    import tarfile

    with tarfile.open(path, "r") as tar:
        members = sorted(
            (m for m in tar.getmembers() if m.isfile() and m.name.startswith("segments/")),
            key=lambda m: m.name,
        )
        for member in members:
            handle = tar.extractfile(member)
            if handle is not None:
                yield from handle


def tally_journal(
    path: Path,
    *,
    since: datetime | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[Key, list[int]]:
    """The tally of a journal directory (segments in parallel) or an export bundle.

    ``progress(done, total)`` is called as segments are tallied.
    """
    cutoff = format_time(since) if since is not None else None
    if path.is_file():
        return tally_lines(_bundle_lines(path), cutoff)
    segments = [(str(p), cutoff) for _, p in list_segments(path)]
    workers = min(workers or os.cpu_count() or 1, len(segments))
    merged: dict[Key, list[int]] = {}
    if workers <= 1:
        parts: Iterable[dict[Key, list[int]]] = map(_tally_file, segments)
        _merge(merged, parts, len(segments), progress)
    else:
        with ProcessPoolExecutor(workers) as pool:
            _merge(merged, pool.map(_tally_file, segments), len(segments), progress)
    return merged


def _merge(
    merged: dict[Key, list[int]],
    parts: Iterable[dict[Key, list[int]]],
    total: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    for done, part in enumerate(parts, start=1):
        if progress is not None:
            progress(done, total)
        for key, (n, tin, tout) in part.items():
            row = merged.setdefault(key, [0, 0, 0])
            row[0] += n
            row[1] += tin
            row[2] += tout


# -- the report -------------------------------------------------------------------------


def cost_report(
    tally: Mapping[Key, list[int]],
    prices: Mapping[str, DestinationCost],
    *,
    days: int | None = None,
) -> CostReport:
    """Price ``tally`` with ``prices`` (destination name → cost).

    ``days`` is the window the tally covers (for the monthly break-even); by default the
    days from the first to the last day with a completion, both included.
    """
    currencies = {c.currency for c in prices.values()}
    if len(currencies) > 1:
        raise CostError(
            f"the policy prices destinations in {', '.join(sorted(currencies))}; "
            "use one currency for every [destinations.NAME.cost]"
        )
    report = CostReport(currency=next(iter(currencies), "USD"), days=days or _span(tally))
    unpriced: set[str] = set()
    cloud: dict[str, list[int]] = {}
    for (name, _kind, label, repo, day), (n, tin, tout) in tally.items():
        cost = prices.get(name)
        amount = spend(cost, tin, tout) if cost is not None else None
        if cost is None:
            unpriced.add(name)
        elif not cost.self_hosted:
            volume = cloud.setdefault(label, [0, 0])
            volume[0] += tin
            volume[1] += tout
        report.total.add(n, tin, tout, amount)
        for rows, key in (
            (report.by_destination, name),
            (report.by_label, label),
            (report.by_repo, repo),
            (report.by_day, day),
        ):
            rows.setdefault(key, Usage()).add(n, tin, tout, amount)
    report.unpriced = sorted(unpriced)
    hardware = {n: c for n, c in prices.items() if c.self_hosted}
    for label, (tin, tout) in sorted(cloud.items()):
        report.break_even.extend(
            _break_even(label, tin, tout, report.days, tally, prices, hardware)
        )
    return report


def _break_even(
    label: str,
    tokens_in: int,
    tokens_out: int,
    days: int,
    tally: Mapping[Key, list[int]],
    prices: Mapping[str, DestinationCost],
    hardware: Mapping[str, DestinationCost],
) -> list[BreakEven]:
    scale = Decimal(MONTH_DAYS) / Decimal(max(days, 1))
    cloud_spend = sum(
        (
            spend(prices[name], tin, tout)
            for (name, _k, lab, _r, _d), (_n, tin, tout) in tally.items()
            if lab == label and name in prices and not prices[name].self_hosted
        ),
        Decimal(0),
    )
    month_in = int((tokens_in * scale).to_integral_value())
    month_out = int((tokens_out * scale).to_integral_value())
    lines = []
    for name, cost in sorted(hardware.items()):
        busy = busy_seconds(cost, month_in, month_out)
        capacity = MONTH_HOURS * 3600 * _d(cost.utilisation)
        machines = max(1, math.ceil(busy / capacity))
        lines.append(
            BreakEven(
                label=label,
                hardware=f"{name} ({cost.hardware})" if cost.hardware else name,
                tokens_in_month=month_in,
                tokens_out_month=month_out,
                cloud_month=cloud_spend * scale,
                self_hosted_month=machines * hourly_cost(cost) * MONTH_HOURS,
                machines=machines,
                busy_share=busy / (machines * MONTH_HOURS * 3600),
            )
        )
    return lines


def _span(tally: Mapping[Key, list[int]]) -> int:
    days = sorted({key[4] for key in tally if len(key[4]) == 10})
    if not days:
        return 1
    try:
        first, last = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
    except ValueError:
        return 1
    return (last - first).days + 1


def exact(amount: Decimal) -> str:
    """``amount`` in plain notation without trailing zeros (``792``, ``0.000001``)."""
    return format(amount.normalize(), "f")


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def _mega(tokens: int) -> str:
    return f"{tokens / 1e6:.2f}M" if tokens >= 100_000 else f"{tokens:,}"


def render_rows(rows: Mapping[str, Usage], currency: str) -> list[tuple[str, str, str, str, str]]:
    """``(key, completions, tokens in, tokens out, spend)`` strings for a table."""
    return [
        (
            key,
            f"{u.requests:,}",
            f"{u.tokens_in:,}",
            f"{u.tokens_out:,}",
            _money(u.spend, currency) + (f" (+{u.unpriced:,} unpriced)" if u.unpriced else ""),
        )
        for key, u in sorted(rows.items())
    ]
