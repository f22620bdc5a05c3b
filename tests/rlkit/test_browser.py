"""The Chromium helpers: counting table rows, measuring ink, and a real render when present."""

from __future__ import annotations

import numpy as np
import pytest

from rlkit.browser import BrowserError, find_chromium, ink, layout, read_png, screenshot, table_rows

PAGE = """<!DOCTYPE html><html><body style="margin:0">
<table id="shown"><tbody><tr><td>a</td></tr><tr><td>b</td></tr><tr><td>c</td></tr></tbody></table>
<details><summary>more</summary>
<table id="folded"><tbody><tr><td>z</td></tr></tbody></table></details>
<div style="width:200px;height:100px;background:#204080"></div>
<div style="height:120px"></div>
</body></html>"""


def test_table_rows_counts_body_rows_only():
    html = (
        '<table id="a"><thead><tr><th>h</th></tr></thead><tbody><tr><td>1</td></tr>'
        "<tr><td>2</td></tr></tbody></table><table><tbody><tr><td>x</td></tr></tbody></table>"
    )
    assert table_rows(html) == {"a": 2, "table1": 1}


def test_ink_of_blank_and_drawn_regions():
    pixels = np.full((100, 100, 3), 255, dtype=np.uint8)
    pixels[10:20, 10:60] = 0
    assert ink(pixels, {"x": 0, "y": 50, "w": 100, "h": 50}) == 0.0
    assert ink(pixels, {"x": 10, "y": 10, "w": 50, "h": 10}, margin=0) == 1.0
    assert ink(pixels, {"x": 0, "y": 0, "w": 100, "h": 100}, margin=0) == pytest.approx(0.05)
    assert ink(pixels, {"x": 0, "y": 0, "w": 0, "h": 0}) == 0.0


@pytest.fixture
def page(tmp_path):
    if find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium): no browser check")
    path = tmp_path / "p.html"
    path.write_text(PAGE)
    return path


def test_layout_and_screenshot(page, tmp_path):
    try:
        rendered = layout(page, width=400)
        shot = read_png(screenshot(page, tmp_path / "p.png", width=400, height=rendered.height))
    except BrowserError as err:
        pytest.skip(f"chromium cannot render here: {err}")
    tables = {t["id"]: t for t in rendered.tables}
    assert tables["shown"]["rows"] == 3 and tables["shown"]["visible"]
    assert tables["folded"]["rows"] == 1 and not tables["folded"]["visible"]
    assert table_rows(rendered.dom) == {"shown": 3, "folded": 1}
    assert "rlkit-layout" not in rendered.dom
    assert shot.shape == (rendered.height, 400, 3)
    # the blue block: find it in the screenshot (its box is not reported, it is not a table)
    blue = np.all(shot == [0x20, 0x40, 0x80], axis=2)
    assert blue.sum() == 200 * 100
    assert ink(shot, {"x": 250, "y": 0, "w": 150, "h": rendered.height}) == 0.0


def test_main_writes_a_palette_screenshot(page, tmp_path, capsys):
    from rlkit.browser import main

    out = tmp_path / "shot.png"
    if main([str(page), str(out), "--width", "300", "--height", "200", "--palette"]) != 0:
        pytest.skip("chromium cannot render here")
    from PIL import Image

    with Image.open(out) as image:
        assert image.size == (300, 200) and image.mode == "P"
    assert "screenshot:" in capsys.readouterr().out
