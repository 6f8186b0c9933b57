"""Renderings of an ``onbox eval`` report: a rich table and a self-contained HTML page.

Both take the ``--json`` document (:meth:`onbox.server.evaluation.EvalReport.to_json`),
so a saved report renders the same as a fresh one, and neither needs a running pipeline.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

#: (key, heading, kind) of the rate metrics, in table and chart order
RATES = (
    ("exactMatch", "exact", "rate"),
    ("editSimilarity", "edit sim", "ratio"),
    ("parsesAfter", "parses", "rate"),
    ("emptyRate", "empty", "rate"),
)
_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1")


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _ratio(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}"


def _ms(value: Any) -> str:
    return "—" if value is None else f"{1000 * value:.0f}"


def _cost(value: Any, currency: Any = "USD") -> str:
    if value is None:
        return "—"
    return f"${value:.4f}" if currency == "USD" else f"{value:.4f} {currency}"


def _tasks_cell(row: Mapping[str, Any]) -> str:
    parts = [str(row["scored"])]
    if row["notAllowed"]:
        parts.append(f"{row['notAllowed']} not allowed")
    if row["fallbacks"]:
        parts.append(f"{row['fallbacks']} fell back")
    if row["errors"]:
        parts.append(f"{row['errors']} errors")
    return ", ".join(parts)


def results_table(data: Mapping[str, Any]) -> Table:
    """The per destination and label table ``onbox eval`` prints."""
    title = f"onbox eval: {data['completedTasks']} of {data['tasks']} tasks, seed {data['seed']}"
    if data["interrupted"]:
        title += " (interrupted)"
    table = Table(title=title)
    for heading in ("destination", "label", "scored"):
        table.add_column(heading)
    for heading in (
        "exact",
        "edit sim",
        "parses",
        "broke",
        "accepted",
        "empty",
        "p50 ms",
        "p95 ms",
        "tokens in/out",
        "cost",
    ):
        table.add_column(heading, justify="right")
    for row in data["results"]:
        not_scored = row["scored"] == 0
        table.add_row(
            escape(row["destination"]),  # names come from the policy: never markup
            escape(row["label"]),
            _tasks_cell(row) if not (not_scored and row["notAllowed"]) else "not allowed",
            _pct(row["exactMatch"]),
            _ratio(row["editSimilarity"]),
            _pct(row["parsesAfter"]),
            _pct(row["brokeParse"]),
            "—" if row["acceptedChars"] is None else f"{row['acceptedChars']:.1f}",
            _pct(row["emptyRate"]),
            _ms(row["latencyP50"]),
            _ms(row["latencyP95"]),
            f"{row['tokensIn']}/{row['tokensOut']}",
            _cost(row["cost"], row["currency"]),
            style="dim" if row["label"] == "all" else None,
        )
    return table


def not_allowed_lines(data: Mapping[str, Any]) -> list[str]:
    """One line per task a destination was not allowed to receive."""
    return [
        f"{i['destination']}: not allowed {i['path']}:{i['line']} ({i['label']}; {i['why']})"
        for i in data["items"]
        if i["status"] == "not-allowed"
    ]


def _bar_chart(
    title: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    unit: str = "%",
    scale: float = 100.0,
    top: float | None = None,
) -> str:
    """Grouped vertical bars as inline SVG: one group per label, one bar per destination.

    Bars are drawn against ``top`` (scaled units; default: the largest value), which the
    title states so that charts are read on their own scale.
    """
    width, height, pad, bar = max(120 * len(groups), 140 * len(series)) + 60, 220, 30, 16
    if top is None:
        top = max([v * scale for vs in series.values() for v in vs if v is not None] + [1.0])
    title = f"{title} (bar top {top:g}{unit})"
    parts = [
        f'<svg width="{width}" height="{height + pad + 50}" role="img" '
        f'aria-label="{html.escape(title)}">'
    ]
    parts.append(f'<text x="0" y="14" font-weight="bold">{html.escape(title)}</text>')
    base = height + pad
    parts.append(f'<line x1="40" y1="{base}" x2="{width}" y2="{base}" stroke="#999"/>')
    for gi, group in enumerate(groups):
        x0 = 50 + gi * 120
        for si, (_name, values) in enumerate(series.items()):
            value = values[gi]
            x = x0 + si * (bar + 2)
            if value is None:
                parts.append(f'<text x="{x}" y="{base - 4}" font-size="10">n/a</text>')
                continue
            h = (value * scale) / top * (height - pad)
            colour = _COLOURS[si % len(_COLOURS)]
            label = f"{value * scale:.1f}{unit}"
            parts.append(
                f'<rect x="{x}" y="{base - h:.1f}" width="{bar}" height="{h:.1f}" fill="{colour}">'
                f"<title>{html.escape(label)}</title></rect>"
            )
        parts.append(f'<text x="{x0}" y="{base + 16}" font-size="12">{html.escape(group)}</text>')
    for si, name in enumerate(series):
        colour = _COLOURS[si % len(_COLOURS)]
        y = base + 34
        x = 50 + si * 140
        parts.append(f'<rect x="{x}" y="{y - 10}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{y}" font-size="12">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(data: Mapping[str, Any]) -> str:
    """A self-contained page: the table and one chart per metric (destinations × labels)."""
    rows = data["results"]
    names = [d["name"] for d in data["destinations"]]
    labels = [lbl for lbl in [*data["labels"], "all"] if any(r["label"] == lbl for r in rows)]
    index = {(r["destination"], r["label"]): r for r in rows}

    def values(key: str, name: str) -> list[float | None]:
        out: list[float | None] = []
        for lbl in labels:
            row = index.get((name, lbl))
            out.append(row[key] if row and row["scored"] else None)
        return out

    charts = []
    for key, heading, _kind in RATES:
        unit, scale = ("%", 100.0) if key != "editSimilarity" else ("", 1.0)
        series = {n: values(key, n) for n in names}
        charts.append(_bar_chart(heading, labels, series, unit=unit, scale=scale, top=scale))
    latency = {n: values("latencyP50", n) for n in names}
    charts.append(_bar_chart("latency p50 (ms)", labels, latency, unit=" ms", scale=1000.0))
    head = (
        "<tr>"
        + "".join(
            f"<th>{h}</th>"
            for h in (
                "destination",
                "label",
                "scored",
                "exact",
                "edit sim",
                "parses",
                "broke",
                "accepted",
                "empty",
                "p50 ms",
                "p95 ms",
                "tokens in/out",
                "cost",
            )
        )
        + "</tr>"
    )
    body = []
    for r in rows:
        cells = (
            r["destination"],
            r["label"],
            _tasks_cell(r),
            _pct(r["exactMatch"]),
            _ratio(r["editSimilarity"]),
            _pct(r["parsesAfter"]),
            _pct(r["brokeParse"]),
            "—" if r["acceptedChars"] is None else f"{r['acceptedChars']:.1f}",
            _pct(r["emptyRate"]),
            _ms(r["latencyP50"]),
            _ms(r["latencyP95"]),
            f"{r['tokensIn']}/{r['tokensOut']}",
            _cost(r["cost"], r["currency"]),
        )
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    refused = "".join(f"<li>{html.escape(line)}</li>" for line in not_allowed_lines(data))
    timing = data["timing"]
    overhead = timing["overhead"]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>onbox eval</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child,td:nth-child(2),td:nth-child(3){text-align:left}"
        ".charts{display:flex;flex-wrap:wrap;gap:2em;margin-top:2em}</style></head><body>"
        f"<h1>onbox eval</h1><p>{data['completedTasks']} of {data['tasks']} tasks, seed "
        f"{data['seed']}{' (interrupted)' if data['interrupted'] else ''}; completions "
        f"{timing['completionSeconds']:.1f} s, evaluator overhead "
        f"{'—' if overhead is None else f'{100 * overhead:.1f}%'}.</p>"
        f"<table>{head}{''.join(body)}</table>"
        f"<div class='charts'>{''.join(charts)}</div>"
        + (f"<h2>Not allowed</h2><ul>{refused}</ul>" if refused else "")
        + "</body></html>"
    )
