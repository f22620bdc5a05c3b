"""Self-contained HTML pages: escaping, tables, embedded PNG figures and one inline style sheet.

The building blocks of the per-evaluation attack report (:mod:`rlkit.attacks.html_report`) and
of the comparison page (:mod:`rlkit.compare`). A page needs nothing from the network: figures
are embedded as base64 ``data:`` URIs, the style sheet is inline, and there is no JavaScript.
Every text that comes from data (names, config values, paths) goes through :func:`esc`.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlkit.io import atomic_write_text
from rlkit.summary import sig3

STYLE = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1400px; padding: 16px 24px 48px; color: #1d232a;
       background: #ffffff; line-height: 1.45; }
h1 { font-size: 1.6em; margin: 0.4em 0 0.2em; }
h2 { font-size: 1.25em; margin: 1.6em 0 0.5em; padding-bottom: 0.2em;
     border-bottom: 2px solid #d8dee4; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
p.meta { color: #57606a; margin: 0 0 1em; }
ul.findings { background: #f6f8fa; border-left: 4px solid #0969da; padding: 10px 12px 10px 32px;
              margin: 0.6em 0 1em; }
ul.findings li { margin: 0.3em 0; }
div.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 0.9em; }
caption { text-align: left; font-weight: 600; padding: 4px 0; color: #24292f; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; }
th { background: #eef1f4; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fafbfc; }
td.bad { background: #ffe3e0 !important; }
td.worse { background: #fff1e5 !important; }
td.good { background: #e6f6e9 !important; }
span.badge { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: 0.85em;
             white-space: nowrap; }
span.detected { background: #cf222e; color: #ffffff; }
span.undetected { background: #1a7f37; color: #ffffff; }
span.na { background: #d0d7de; color: #24292f; }
figure { margin: 0.8em 0 1.4em; }
figure img { max-width: 100%; border: 1px solid #d0d7de; display: block; }
figcaption { color: #57606a; font-size: 0.88em; margin-top: 4px; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; padding: 8px 10px; overflow-x: auto;
      font-size: 0.82em; }
details > summary { cursor: pointer; color: #0969da; margin: 0.4em 0; }
.small { font-size: 0.85em; color: #57606a; }
"""


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML (``<``, ``>``, ``&`` and quotes escaped).

    :param value: anything (shown with ``str``).
    """
    return html.escape("" if value is None else str(value), quote=True)


@dataclass
class Cell:
    """A table cell with its own classes or tooltip.

    :param text: the shown text (escaped unless ``raw``).
    :param cls: CSS classes (``num``, ``bad``, ``good``, ...).
    :param title: tooltip (e.g. the full-precision value).
    :param raw: ``text`` is already HTML.
    """

    text: str
    cls: str = ""
    title: str = ""
    raw: bool = False


def num(value: Any, signed: bool = False, cls: str = "") -> Cell:
    """A right-aligned number cell: 3 significant digits shown, the full value as tooltip.

    :param value: the number (None: ``n/a``).
    :param signed: prefix positive numbers with ``+`` (regrets).
    :param cls: more CSS classes.
    """
    title = repr(float(value)) if isinstance(value, int | float) and value is not None else ""
    return Cell(sig3(value, signed=signed), f"num {cls}".strip(), title)


def _cell(value: Any, tag: str) -> str:
    if not isinstance(value, Cell):
        if isinstance(value, bool) or value is None or not isinstance(value, int | float):
            value = Cell(sig3(value) if isinstance(value, bool) or value is None else str(value))
        else:
            value = num(value)
    attrs = f' class="{esc(value.cls)}"' if value.cls else ""
    attrs += f' title="{esc(value.title)}"' if value.title else ""
    text = value.text if value.raw else esc(value.text)
    return f"<{tag}{attrs}>{text}</{tag}>"


def table(
    header: Sequence[Any] | None,
    rows: Iterable[Sequence[Any]],
    caption: str | None = None,
    table_id: str | None = None,
) -> str:
    """An HTML table: one header row, then one ``<tr>`` per row.

    Plain numbers become :func:`num` cells; anything else is shown as text. Give :class:`Cell`
    values for classes, tooltips or HTML content.

    :param header: column titles (None: no header row).
    :param rows: the cells of each row.
    :param caption: optional caption above the table.
    :param table_id: optional ``id`` attribute.
    """
    ident = f' id="{esc(table_id)}"' if table_id else ""
    lines = [f'<div class="scroll"><table{ident}>']
    if caption:
        lines.append(f"<caption>{esc(caption)}</caption>")
    if header is not None:
        lines.append("<thead><tr>" + "".join(_cell(h, "th") for h in header) + "</tr></thead>")
    lines.append("<tbody>")
    lines += ["<tr>" + "".join(_cell(c, "td") for c in row) + "</tr>" for row in rows]
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def badge(text: str, kind: str) -> Cell:
    """A coloured label cell (``kind``: ``detected``, ``undetected`` or ``na``).

    :param text: the label.
    :param kind: its colour class.
    """
    return Cell(f'<span class="badge {esc(kind)}">{esc(text)}</span>', raw=True)


def png_data_uri(data: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes.

    :param data: the PNG file's bytes.
    """
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_to_png(fig: Any, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed).

    :param fig: the figure.
    :param dpi: resolution.
    """
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def figure(png: bytes | Path, caption: str, alt: str | None = None) -> str:
    """A ``<figure>`` with the PNG embedded (no file needed beside the page).

    :param png: PNG bytes or the path of a PNG file.
    :param caption: shown under the image.
    :param alt: the image's alternative text (default: the caption).
    """
    data = png.read_bytes() if isinstance(png, Path) else png
    return (
        f'<figure><img src="{png_data_uri(data)}" alt="{esc(alt or caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def pre(text: str) -> str:
    """Preformatted text (a config, a log), escaped.

    :param text: the text.
    """
    return f"<pre>{esc(text)}</pre>"


def bullets(items: Iterable[str], cls: str = "findings") -> str:
    """A ``<ul>`` of items given as HTML (escape data with :func:`esc` first).

    :param items: the items' HTML.
    :param cls: the list's CSS class.
    """
    return f'<ul class="{esc(cls)}">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def page(title: str, body: Sequence[str], subtitle: str | None = None) -> str:
    """A whole HTML document: inline style, title, a generation line, then ``body``.

    :param title: the page title (escaped).
    :param body: HTML fragments, in order.
    :param subtitle: a line under the title (escaped).
    """
    stamp = time.strftime("%Y-%m-%d %H:%M")
    meta = f"{esc(subtitle)} · " if subtitle else ""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{esc(title)}</title>",
            f"<style>{STYLE}</style></head><body>",
            f"<h1>{esc(title)}</h1>",
            f'<p class="meta">{meta}written by rlkit on {stamp}</p>',
            *body,
            "</body></html>",
            "",
        ]
    )


def write_page(path: Path, document: str) -> Path:
    """Write ``document`` to ``path`` atomically and return ``path``.

    :param path: the ``.html`` file.
    :param document: from :func:`page`.
    """
    atomic_write_text(path, document)
    return path
