"""Render a :class:`~onbox.classification.report.Report` as one self-contained HTML page.

No network: CSS, JavaScript and the SVG treemap are inline. The treemap is laid out
here (squarified, Bruls et al. 2000): directories nest, each file's area is its size,
its colour its label (green → amber → red from the lowest label to the highest).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from onbox.classification.report import FileEntry, Report

WIDTH, HEIGHT = 1200.0, 640.0
_STOPS = ((0x2E, 0x9D, 0x58), (0xF0, 0xA2, 0x02), (0xD6, 0x33, 0x3A))


def label_colours(labels: Sequence[str]) -> dict[str, str]:
    """A colour per label, interpolated green → amber → red along the scale."""
    colours = {}
    for i, name in enumerate(labels):
        t = i / (len(labels) - 1) if len(labels) > 1 else 1.0
        segment = min(int(t * 2), 1)
        local = t * 2 - segment
        a, b = _STOPS[segment], _STOPS[segment + 1]
        rgb = tuple(round(a[k] + (b[k] - a[k]) * local) for k in range(3))
        colours[name] = "#" + "".join(f"{c:02x}" for c in rgb)
    return colours


@dataclass
class _Node:
    name: str
    size: float = 0.0
    entry: FileEntry | None = None
    children: dict[str, _Node] = field(default_factory=dict)


def _tree(files: Sequence[FileEntry]) -> _Node:
    root = _Node("")
    for entry in files:
        node = root
        parts = entry.path.split("/")
        weight = float(max(entry.size, 256))
        node.size += weight
        for part in parts[:-1]:
            node = node.children.setdefault(part, _Node(part))
            node.size += weight
        node.children[parts[-1]] = _Node(parts[-1], weight, entry)
    return root


def _worst(row: list[float], side: float) -> float:
    total = sum(row)
    return max(
        max(side * side * r / (total * total), total * total / (side * side * r)) for r in row
    )


def squarify(
    sizes: Sequence[float], x: float, y: float, w: float, h: float
) -> list[tuple[float, float, float, float]]:
    """Rectangles (x, y, w, h) for ``sizes`` (sorted descending) filling the box."""
    total = sum(sizes)
    if total <= 0 or w <= 0 or h <= 0:
        return [(x, y, 0.0, 0.0) for _ in sizes]
    areas = [s * w * h / total for s in sizes]
    rects: list[tuple[float, float, float, float]] = []
    i = 0
    while i < len(areas):
        side = min(w, h)
        row = [areas[i]]
        i += 1
        while i < len(areas) and _worst([*row, areas[i]], side) <= _worst(row, side):
            row.append(areas[i])
            i += 1
        row_total = sum(row)
        if w >= h:  # lay the row out as a column on the left
            col_w = row_total / h
            cy = y
            for area in row:
                rects.append((x, cy, col_w, area / col_w))
                cy += area / col_w
            x, w = x + col_w, w - col_w
        else:
            row_h = row_total / w
            cx = x
            for area in row:
                rects.append((cx, y, area / row_h, row_h))
                cx += area / row_h
            y, h = y + row_h, h - row_h
    return rects


def _layout(
    node: _Node,
    box: tuple[float, float, float, float],
    depth: int,
    colours: dict[str, str],
    out: list[str],
) -> None:
    x, y, w, h = box
    children = sorted(node.children.values(), key=lambda n: -n.size)
    rects = squarify([c.size for c in children], x, y, w, h)
    for child, (cx, cy, cw, ch) in zip(children, rects, strict=True):
        if cw < 0.3 or ch < 0.3:
            continue
        if child.entry is not None:
            entry = child.entry
            tip = html.escape(f"{entry.path} — {entry.label} ({', '.join(entry.deciding)})")
            out.append(
                f'<rect x="{cx:.1f}" y="{cy:.1f}" width="{cw:.1f}" height="{ch:.1f}" '
                f'fill="{colours.get(entry.label, "#888")}" data-l="{entry.label}">'
                f"<title>{tip}</title></rect>"
            )
            continue
        pad = 2.0 if depth < 3 and cw > 12 and ch > 12 else 0.0
        head = 13.0 if depth < 2 and cw > 60 and ch > 40 else 0.0
        out.append(
            f'<rect class="dir" x="{cx:.1f}" y="{cy:.1f}" width="{cw:.1f}" '
            f'height="{ch:.1f}"><title>{html.escape(child.name)}/</title></rect>'
        )
        if head:
            out.append(
                f'<text x="{cx + 3:.1f}" y="{cy + 10:.1f}">'
                f"{html.escape(child.name[: int(cw / 6)])}</text>"
            )
        _layout(
            child,
            (cx + pad, cy + pad + head, cw - 2 * pad, ch - 2 * pad - head),
            depth + 1,
            colours,
            out,
        )


def treemap_svg(report: Report) -> str:
    """The treemap of ``report`` as an inline SVG element."""
    colours = label_colours(report.labels)
    parts: list[str] = []
    _layout(_tree(report.files), (0.0, 0.0, WIDTH, HEIGHT), 0, colours, parts)
    return (
        f'<svg id="map" viewBox="0 0 {WIDTH:.0f} {HEIGHT:.0f}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'
    )


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px} .meta{color:#5b6475;margin-bottom:16px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:16px}
.card{background:#fff;border-radius:8px;padding:10px 16px;box-shadow:0 1px 3px #0002;min-width:120px}
.card b{display:block;font-size:24px} .sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:-1px}
#map{width:100%;height:auto;background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002}
#map rect{stroke:#fff;stroke-width:.4} #map rect.dir{fill:#e9ecf1;stroke:#aab2bf;stroke-width:.6}
#map text{font-size:10px;fill:#333;pointer-events:none} #map rect.dim{opacity:.15}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 3px #0002;border-radius:8px;width:100%}
th,td{padding:5px 10px;border-bottom:1px solid #eceef2;text-align:left;vertical-align:top} th{background:#eef0f4}
.grid{display:grid;grid-template-columns:1fr 2fr;gap:16px;margin:16px 0} input{padding:6px;width:320px}
code{font-size:12px}
"""

_JS = """
document.querySelectorAll('.card[data-l]').forEach(function(c){c.onclick=function(){
  var l=c.dataset.l, on=c.classList.toggle('sel');
  document.querySelectorAll('#map rect[data-l]').forEach(function(r){
    r.classList.toggle('dim', on && r.dataset.l!==l);});};});
document.getElementById('q').oninput=function(e){var q=e.target.value.toLowerCase();
  document.querySelectorAll('#rc tbody tr').forEach(function(r){
    r.style.display=r.textContent.toLowerCase().indexOf(q)<0?'none':'';});};
"""


def render_html(report: Report, *, max_candidates: int = 500) -> str:
    """The whole report page (a string of HTML with no external references)."""
    colours = label_colours(report.labels)
    esc = html.escape
    cards = "".join(
        f'<div class="card" data-l="{esc(n)}"><span class="sw" style="background:{colours[n]}">'
        f"</span>{esc(n)}<b>{c}</b></div>"
        for n, c in report.by_label.items()
    )
    signals = "".join(
        f"<tr><td>{esc(s)}</td><td>{c}</td></tr>" for s, c in report.by_signal.items()
    )
    candidates = report.review_candidates
    rows = "".join(
        f'<tr><td><code>{esc(f.path)}</code></td><td><span class="sw" '
        f'style="background:{colours.get(f.label, "#888")}"></span>{esc(f.label)}</td>'
        f"<td>{esc(f.structural)}</td><td>{esc(', '.join(f'{k} ×{v}' for k, v in f.findings.items()) or 'marker')}</td></tr>"
        for f in candidates[:max_candidates]
    )
    more = (
        f"<p>… and {len(candidates) - max_candidates} more (see --json).</p>"
        if len(candidates) > max_candidates
        else ""
    )
    allowed = report.suppressed
    allowed_rows = "".join(
        f"<tr><td><code>{esc(f.path)}</code></td><td>{esc(f.label)}</td><td>"
        f"{esc(', '.join(f'{k} ×{v}' for k, v in f.suppressed.items()))}</td></tr>"
        for f in allowed[:max_candidates]
    )
    suppressed = (
        f"<h2>Suppressed by the policy's allowlist ({len(allowed)} files)</h2>"
        "<p>Findings an <code>[[allowlist]]</code> entry accepts: they do not raise a label.</p>"
        f"<table><thead><tr><th>file</th><th>label</th><th>suppressed</th></tr></thead>"
        f"<tbody>{allowed_rows}</tbody></table>"
        if allowed
        else ""
    )
    data = json.dumps({"by_label": report.by_label, "by_signal": report.by_signal})
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>Onbox classification — {esc(report.repo or report.root)}</title><style>{_CSS}</style></head><body>
<h1>Classification of {esc(report.repo or report.root)}</h1>
<div class="meta">{len(report.files)} files · policy <code>{esc(report.policy_id)}</code> · {report.seconds:.1f} s · click a label to highlight it</div>
<div class="cards">{cards}</div>
{treemap_svg(report)}
<div class="grid"><div><h2>Deciding signal</h2><table><thead><tr><th>signal</th><th>files</th></tr></thead><tbody>{signals}</tbody></table></div>
<div><h2>Review candidates ({len(candidates)})</h2><p>Content puts these files above the label their path, owners and tags give.</p>
<input id="q" placeholder="filter…"><table id="rc"><thead><tr><th>file</th><th>label</th><th>structural</th><th>findings</th></tr></thead><tbody>{rows}</tbody></table>{more}</div></div>
{suppressed}
<script type="application/json" id="data">{data}</script><script>{_JS}</script></body></html>"""


def render_rollup_html(reports: Sequence[Report], *, max_candidates: int = 20) -> str:
    """One page for several repositories: totals, a row per repository, its worst files."""
    from onbox.classification.report import rollup

    summary = rollup(list(reports))
    labels: list[str] = summary["labels"]
    colours = label_colours(labels)
    esc = html.escape
    cards = "".join(
        f'<div class="card"><span class="sw" style="background:{colours[n]}"></span>'
        f"{esc(n)}<b>{c}</b></div>"
        for n, c in summary["by_label"].items()
    )
    head = "".join(f"<th>{esc(n)}</th>" for n in labels)
    rows = "".join(
        f"<tr><td><code>{esc(str(r['repo']))}</code></td><td>{r['files']}</td>"
        + "".join(f"<td>{r['by_label'].get(n, 0)}</td>" for n in labels)
        + f"<td>{r['review_candidates']}</td><td>{r['suppressed_files']}</td></tr>"
        for r in summary["by_repo"]
    )
    sections = []
    for report in reports:
        worst = report.review_candidates[:max_candidates]
        if not worst:
            continue
        items = "".join(
            f"<tr><td><code>{esc(f.path)}</code></td><td>{esc(f.label)}</td>"
            f"<td>{esc(f.structural)}</td>"
            f"<td>{esc(', '.join(f'{k} ×{v}' for k, v in f.findings.items()) or 'marker')}</td></tr>"
            for f in worst
        )
        sections.append(
            f"<details><summary>{esc(str(report.repo or report.root))}: "
            f"{len(report.review_candidates)} review candidates</summary><table><thead><tr>"
            "<th>file</th><th>label</th><th>structural</th><th>findings</th></tr></thead>"
            f"<tbody>{items}</tbody></table></details>"
        )
    policies = sorted({r.policy_id for r in reports})
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Onbox classification — {summary["repos"]} repositories</title><style>{_CSS}</style></head><body>
<h1>Classification of {summary["repos"]} repositories</h1>
<div class="meta">{summary["files"]} files · policy {esc(", ".join(policies))} · {summary["review_candidates"]} review candidates · {summary["suppressed_files"]} files with allowlisted findings</div>
<div class="cards">{cards}</div>
<table><thead><tr><th>repository</th><th>files</th>{head}<th>review candidates</th><th>allowlisted</th></tr></thead><tbody>{rows}</tbody></table>
<h2>Review candidates by repository</h2>{"".join(sections) or "<p>none</p>"}
</body></html>"""
