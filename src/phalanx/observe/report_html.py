"""HTML pieces of report.html: escaped tables, embedded PNG figures, the page shell.

The page has no external reference at all (no fonts, scripts or images from
the network), so it can be mailed, archived or opened offline.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from html import escape

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #1b1f24; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #d0d7de; padding-bottom: .2em; }
.sub { color: #57606a; margin-top: 0; }
table { border-collapse: collapse; margin: .6em 0; font-variant-numeric: tabular-nums; }
th, td { padding: .25em .8em; border-bottom: 1px solid #d0d7de; text-align: left; }
th { background: #f3f5f7; }
td.num { text-align: right; }
img { max-width: 100%; border: 1px solid #eaeef2; }
.warning { background: #fff8c5; border: 1px solid #d4a72c; padding: .6em 1em; }
.ok { color: #1a7f37; font-weight: 600; }
.bad { color: #cf222e; font-weight: 600; }
.note { color: #57606a; }
"""


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for value in row:
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            cells.append(f'<td class="{"num" if numeric else ""}">{escape(_text(value))}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def key_values(pairs: Iterable[tuple[str, object]]) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(_text(v))}</td></tr>" for k, v in pairs)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def figure(png: bytes, name: str, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<img data-plot="{escape(name)}" alt="{escape(alt)}" src="data:image/png;base64,{data}">'
    )


def section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{escape(section_id)}"><h2>{escape(title)}</h2>{body}</section>'


def paragraph(text: str, css: str = "") -> str:
    return f'<p class="{css}">{escape(text)}</p>' if css else f"<p>{escape(text)}</p>"


def page(title: str, subtitle: str, warnings: Sequence[str], sections: Sequence[str]) -> str:
    banner = "".join(f'<p class="warning">warning: {escape(w)}</p>' for w in warnings)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f'<h1>{escape(title)}</h1><p class="sub">{escape(subtitle)}</p>{banner}'
        f"{''.join(sections)}</body></html>"
    )


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
