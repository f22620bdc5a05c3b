"""The HTML building blocks: escaping, tables, embedded figures, the page shell."""

from __future__ import annotations

import base64
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rlkit.browser import table_rows  # noqa: E402
from rlkit.htmlpage import (  # noqa: E402
    Cell,
    badge,
    bullets,
    esc,
    figure,
    figure_to_png,
    num,
    page,
    pre,
    table,
    write_page,
)


def test_esc():
    assert esc('<a href="x">&</a>') == "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
    assert esc(None) == ""


def test_num_cell_three_digits_and_full_tooltip():
    cell = num(-0.000123456, signed=True)
    assert cell.text == "-0.000123" and cell.cls == "num" and cell.title == "-0.000123456"
    assert num(0.5, signed=True).text == "+0.5"
    assert num(None).text == "n/a"


def test_table_rows_header_and_escaping():
    html = table(["a<b", "n"], [["x<y", 1.23456], [Cell("<i>k</i>", raw=True), None]], table_id="t")
    assert table_rows(html) == {"t": 2}
    assert "<th>a&lt;b</th>" in html and "<td>x&lt;y</td>" in html
    assert '<td class="num" title="1.23456">1.23</td>' in html
    assert "<td><i>k</i></td>" in html and "<td>n/a</td>" in html
    assert "<thead>" not in table(None, [["only"]])


def test_badge_and_bullets():
    assert badge("not detected", "undetected").text == (
        '<span class="badge undetected">not detected</span>'
    )
    assert bullets(["a", "b"]) == '<ul class="findings"><li>a</li><li>b</li></ul>'


def test_figure_embeds_png(tmp_path):
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    png = figure_to_png(fig)
    assert png.startswith(b"\x89PNG")
    html = figure(png, "a <caption>")
    data = re.search(r'src="data:image/png;base64,([^"]+)"', html)
    assert data is not None and base64.b64decode(data.group(1)) == png
    assert "<figcaption>a &lt;caption&gt;</figcaption>" in html
    path = tmp_path / "f.png"
    path.write_bytes(png)
    assert figure(path, "c") == figure(png, "c")


def test_page_is_one_document_without_network(tmp_path):
    doc = page("T <1>", [pre("x < y"), "<p>body</p>"], subtitle="sub & more")
    assert doc.startswith("<!DOCTYPE html>") and doc.count("<html") == 1
    assert "<title>T &lt;1&gt;</title>" in doc and "sub &amp; more" in doc
    assert "<pre>x &lt; y</pre>" in doc
    assert "http" not in doc and "<script" not in doc and "<link" not in doc
    path = write_page(tmp_path / "p.html", doc)
    assert path.read_text() == doc
