"""The web dashboard's HTML: the terminal view's header and replica table, as a page.

The server renders the current state into the page itself (so it is complete
without scripts, e.g. for `chromium --dump-dom`), and a few lines of script
then swap in a fresh fragment every second, replacing only the content
element so the page does not flash.
"""

from __future__ import annotations

from html import escape
from typing import Any

from phalanx.observe.fleet_state import REPLICA_COLUMNS, header_fields, replica_cells

REFRESH_MS = 1000

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #1b1f24; background: #fafbfc; }
h1 { font-size: 1.3em; margin: 0 0 .6em 0; }
.header { display: flex; flex-wrap: wrap; gap: .5em 1.6em; margin-bottom: 1em; }
.field .label { color: #57606a; font-size: .85em; display: block; }
.field .value { font-size: 1.25em; font-weight: 600; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: .3em .9em; border-bottom: 1px solid #d0d7de; text-align: left; }
th { background: #eef1f4; }
td.num { text-align: right; }
.state-training, .state-done { color: #1a7f37; font-weight: 600; }
.state-joining, .state-healing, .state-restarting, .state-starting { color: #0969da; }
.state-hung, .state-out { color: #9a6700; font-weight: 600; }
.state-down { color: #cf222e; font-weight: 600; }
footer { margin-top: 1em; color: #57606a; font-size: .85em; }
"""

_SCRIPT = f"""
async function refresh() {{
  try {{
    const response = await fetch('/fragment', {{cache: 'no-store'}});
    if (!response.ok) return;
    const fleet = document.getElementById('fleet');
    fleet.innerHTML = await response.text();
    fleet.dataset.refreshes = String(Number(fleet.dataset.refreshes || 0) + 1);
  }} catch (err) {{ /* the run ended and the server is gone: keep the last picture */ }}
}}
setInterval(refresh, {REFRESH_MS});
"""

_NUMERIC = {"share", "samples/s", "°C", "W"}


def fragment_html(state: dict[str, Any] | None) -> str:
    if state is None:
        return "<p>waiting for the first events…</p>"
    fields = "".join(
        f'<div class="field" data-field="{escape(label)}"><span class="label">{escape(label)}</span>'
        f'<span class="value">{escape(value)}</span></div>'
        for label, value in header_fields(state)
    )
    head = "".join(f"<th>{escape(c)}</th>" for c in REPLICA_COLUMNS)
    rows = []
    for row in state["replicas"]:
        cells = []
        for column, text in zip(REPLICA_COLUMNS, replica_cells(row)):
            css = "num" if column in _NUMERIC else ""
            if column == "state":
                css = f"state-{escape(row['state'])}"
            cells.append(f'<td class="{css}">{escape(text)}</td>')
        rows.append(f'<tr data-replica="{escape(row["name"])}">{"".join(cells)}</tr>')
    return (
        f'<div class="header" data-step="{state["step"]}">{fields}</div>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"<footer>refreshes every {REFRESH_MS / 1000:g} s · "
        '<a href="/api/state">/api/state</a> · <a href="/metrics">/metrics</a></footer>'
    )


def page_html(state: dict[str, Any] | None, title: str = "phalanx fleet") -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><div id=fleet>{fragment_html(state)}</div>"
        f"<script>{_SCRIPT}</script></body></html>"
    )
