"""The dashboard page: one server-rendered HTML document, no scripts, no external assets.

Per-device chain status, open alerts, egress by label and destination (and by day),
token volume to each cloud destination. Every value is escaped; the page refreshes
itself every 30 seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from html import escape
from typing import Any

from onbox.collector.query import egress_summary, list_alerts, list_devices
from onbox.collector.store import Store

_STYLE = """
body{font:14px system-ui,sans-serif;margin:24px;color:#1b1f24;background:#f6f8fa}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse;background:#fff;min-width:480px}
th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#eaeef2}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}
.muted{color:#57606a}.bar{display:inline-block;height:10px;background:#0969da}
code{font-size:12px}
"""


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    if not body:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(value: Any, cls: str = "") -> str:
    text = "" if value is None else str(value)
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{escape(text)}</td>"


def _when(value: Any) -> str:
    """``2026-12-01 08:18:30Z`` from a journal time (seconds are enough on a dashboard)."""
    text = "" if value is None else str(value)
    return f"{text[:10]} {text[11:19]}Z" if len(text) >= 19 else text


def _enrolment(device: dict[str, object]) -> str:
    """The status, and for a re-enrolled workstation which root key came before or after."""
    epoch = device.get("epoch")
    if not isinstance(epoch, dict):
        return str(device["status"])
    if epoch.get("replaced_by"):
        return f"{device['status']} (epoch {epoch['epoch']}, now {str(epoch['replaced_by'])[:8]})"
    return f"{device['status']} (epoch {epoch['epoch']})"


def render(store: Store, *, silence: timedelta) -> str:
    """The whole page."""
    devices = list_devices(store, silence=silence)
    alerts = list_alerts(store, silence=silence)
    egress = egress_summary(store)
    device_rows = [
        [
            f"<td><code>{escape(str(d['device']))}</code></td>",
            _td(_enrolment(d)),
            _td(d["chain"], "ok" if d["chain"] == "ok" else "bad"),
            _td(d["head_seq"], "num"),
            _td(d["entries"], "num"),
            _td(_when(d["last_seen"])),
        ]
        for d in devices
    ]
    alert_rows = [
        [
            _td(a["kind"], "bad"),
            f"<td><code>{escape(str(a['device']))}</code></td>",
            _td(
                f"{a['first_seq']}–{a['last_seq']}"
                if a["first_seq"] is not None and a["last_seq"] != a["first_seq"]
                else a["first_seq"]
            ),
            _td(a["detail"]),
            _td(_when(a["created"])),
        ]
        for a in alerts
    ]
    pairs = egress["by_label_destination"]
    top = max((p["requests"] for p in pairs), default=1)
    egress_rows = [
        [
            _td(p["label"]),
            _td(p["destination"]),
            _td(p["requests"], "num"),
            _td(p["bytes"], "num"),
            f'<td><span class="bar" style="width:{int(160 * p["requests"] / top)}px"></span></td>',
        ]
        for p in pairs
    ]
    day_rows = [
        [_td(d["day"]), _td(d["label"]), _td(d["requests"], "num")] for d in egress["by_day"]
    ]
    token_rows = [
        [_td(t["destination"]), _td(t["tokens_in"], "num"), _td(t["tokens_out"], "num")]
        for t in egress["tokens"]
    ]
    healthy = sum(1 for d in devices if d["chain"] == "ok")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta http-equiv="refresh" content="30"><title>Onbox collector</title>'
        f"<style>{_STYLE}</style></head><body>"
        "<h1>Onbox collector</h1>"
        f'<p class="muted">{len(devices)} devices, {healthy} with an intact chain; '
        f"{len(alerts)} open alerts; egress over the last {egress['days']} days</p>"
        "<h2>Open alerts</h2>"
        + _table(["alert", "device", "seq", "detail", "raised"], alert_rows, "No open alerts.")
        + "<h2>Devices</h2>"
        + _table(
            ["device", "enrolment", "chain", "head seq", "entries", "last seen"],
            device_rows,
            "No device has uploaded yet.",
        )
        + "<h2>Egress by label and destination</h2>"
        + _table(["label", "destination", "requests", "bytes", ""], egress_rows, "No egress.")
        + "<h2>Egress by day</h2>"
        + _table(["day", "label", "requests"], day_rows, "No egress.")
        + "<h2>Tokens to cloud destinations</h2>"
        + _table(["destination", "tokens in", "tokens out"], token_rows, "No cloud completions.")
        + "</body></html>"
    )
