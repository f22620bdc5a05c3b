"""Render rlkit's HTML pages in headless Chromium: screenshots, layout and the rendered DOM.

Used by the report tests (are the tables and images there and visible?) and to take the
screenshots committed under docs/. Chromium is run directly (Debian's ``chromium`` package,
which ``make setup`` installs when missing); :func:`find_chromium` says whether it is there.

* :func:`layout`: the page rendered once with a small inline script appended to a copy of it
  (the page itself has none): the document size, each image's box and natural size, each table's
  box and body rows, and the DOM after rendering (``--dump-dom``).
* :func:`screenshot`: a PNG of the whole page (the window as tall as the document), device
  pixels equal to CSS pixels, so :func:`layout` boxes index it directly.
* :func:`table_rows`: body rows of each table (by ``id``) counted in a DOM text.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Chromium refuses windows much taller than this; longer pages are cut there.
MAX_HEIGHT = 16000
MARKER = "rlkit-layout"
PROBE = (
    "<script>window.addEventListener('load', function () {"
    " function box(e) { var b = e.getBoundingClientRect();"
    "  return {x: b.left + window.scrollX, y: b.top + window.scrollY, w: b.width, h: b.height}; }"
    " function seen(e) { return (e.checkVisibility ? e.checkVisibility({visibilityProperty: true,"
    "  contentVisibilityAuto: true}) : e.getClientRects().length > 0)"
    "  && e.getBoundingClientRect().height > 0; }"
    " var out = {width: document.documentElement.scrollWidth,"
    "  height: document.documentElement.scrollHeight, images: [], tables: []};"
    " Array.prototype.forEach.call(document.images, function (i) {"
    "  var b = box(i); b.alt = i.alt; b.natural_w = i.naturalWidth; b.natural_h = i.naturalHeight;"
    "  b.complete = i.complete; b.visible = seen(i); out.images.push(b); });"
    " Array.prototype.forEach.call(document.querySelectorAll('table'), function (t) {"
    "  var b = box(t); b.id = t.id; var body = t.tBodies.length ? t.tBodies[0] : t;"
    "  b.rows = body.rows.length; b.visible = seen(t);"
    "  out.tables.push(b); });"
    " var pre = document.createElement('pre'); pre.id = '" + MARKER + "';"
    " pre.textContent = JSON.stringify(out); document.body.appendChild(pre); });</script>"
)


class BrowserError(RuntimeError):
    """Chromium is missing or could not render the page."""


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) binary on PATH, or None."""
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    binary = find_chromium()
    if binary is None:
        raise BrowserError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="rlkit-chromium-") as profile:
        command = [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            "--force-device-scale-factor=1",
            f"--user-data-dir={profile}",
            *args,
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as err:
            raise BrowserError(f"chromium did not finish in {timeout:g} s") from err
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise BrowserError(f"chromium exited with status {done.returncode}: {tail}")
    return done


@dataclass
class Layout:
    """A rendered page: its size, image and table boxes, and the DOM after rendering.

    :param width: document width (CSS pixels).
    :param height: document height (CSS pixels).
    :param images: per ``<img>``: ``x, y, w, h, alt, natural_w, natural_h, complete, visible``.
    :param tables: per ``<table>``: ``x, y, w, h, id, rows`` (body rows), ``visible`` (drawn:
        not inside a closed ``<details>``, not hidden).
    :param dom: the serialised DOM after rendering (the probe's output removed).
    """

    width: int
    height: int
    images: list[dict[str, Any]]
    tables: list[dict[str, Any]]
    dom: str


def layout(page: str | Path, width: int = 1280, timeout: float = 120.0) -> Layout:
    """Render ``page`` (a copy with :data:`PROBE` appended) and read back its layout and DOM.

    :param page: the HTML file.
    :param width: window width (CSS pixels).
    :param timeout: seconds allowed to Chromium.
    """
    page = Path(page).resolve()
    text = page.read_text()
    probed = text.replace("</body>", PROBE + "</body>") if "</body>" in text else text + PROBE
    with tempfile.TemporaryDirectory(prefix="rlkit-page-") as folder:
        copy = Path(folder) / page.name
        copy.write_text(probed)
        done = _run(
            [
                f"--window-size={width},1000",
                "--virtual-time-budget=20000",
                "--dump-dom",
                copy.as_uri(),
            ],
            timeout,
        )
    dom = done.stdout
    match = re.search(rf'<pre id="{MARKER}">(.*?)</pre>', dom, flags=re.S)
    if match is None:
        raise BrowserError(f"{page}: the page did not finish loading in Chromium")
    data = json.loads(_unescape(match.group(1)))
    dom = dom[: match.start()] + dom[match.end() :]
    dom = re.sub(r"<script>window\.addEventListener\('load'.*?</script>", "", dom, flags=re.S)
    return Layout(int(data["width"]), int(data["height"]), data["images"], data["tables"], dom)


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)


def screenshot(
    page: str | Path,
    out: str | Path,
    width: int = 1280,
    height: int | None = None,
    timeout: float = 120.0,
) -> Path:
    """A PNG of ``page``: the window ``width`` wide and as tall as the document (at most
    :data:`MAX_HEIGHT`), or ``height`` when given (the top of the page).

    :param page: the HTML file.
    :param out: the PNG to write.
    :param width: window width (CSS pixels = device pixels).
    :param height: window height; None: the document's height (from :func:`layout`).
    :param timeout: seconds allowed to Chromium.
    """
    page, out = Path(page).resolve(), Path(out).resolve()
    if height is None:
        height = layout(page, width, timeout).height
    height = max(100, min(int(height), MAX_HEIGHT))
    out.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [
            f"--window-size={width},{height}",
            "--virtual-time-budget=20000",
            f"--screenshot={out}",
            page.as_uri(),
        ],
        timeout,
    )
    if not out.is_file():
        raise BrowserError(f"chromium wrote no screenshot of {page}")
    return out


def read_png(path: str | Path) -> np.ndarray:
    """A PNG as an (H, W, 3) uint8 RGB array.

    :param path: the PNG file.
    """
    import matplotlib.image

    image = matplotlib.image.imread(str(path))
    if image.dtype != np.uint8:
        image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return image[:, :, :3]


def ink(pixels: np.ndarray, box: dict[str, Any], margin: int = 2) -> float:
    """Share of the pixels inside ``box`` (``x, y, w, h``) that are not near-white: 0 for a blank
    region, a few percent for text, more for plots.

    :param pixels: a screenshot from :func:`read_png`.
    :param box: a box from :func:`layout`.
    :param margin: pixels trimmed on each side (borders).
    """
    x0, y0 = int(box["x"]) + margin, int(box["y"]) + margin
    x1, y1 = int(box["x"] + box["w"]) - margin, int(box["y"] + box["h"]) - margin
    region = pixels[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)]
    if region.size == 0:
        return 0.0
    return float(np.mean(region.min(axis=2) < 235))


class _Rows(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, int] = {}
        self._stack: list[str] = []
        self._body = False
        self._count = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._stack.append(dict(attrs).get("id") or f"table{len(self.rows)}")
            self._count, self._body = 0, False
        elif tag == "tbody" and self._stack:
            self._body = True
        elif tag == "tr" and self._stack and self._body:
            self._count += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._stack:
            self.rows[self._stack.pop()] = self._count
            self._body = False


def table_rows(dom: str) -> dict[str, int]:
    """Body rows (``<tbody><tr>``) of each table in ``dom``, by table ``id`` (``tableN`` for a
    table without one).

    :param dom: HTML text (a file or the DOM from :func:`layout`).
    """
    parser = _Rows()
    parser.feed(dom)
    return parser.rows


def main(argv: list[str] | None = None) -> int:
    """``python -m rlkit.browser PAGE.html OUT.png [--width W] [--height H] [--palette]``: a
    screenshot of a page (the whole page unless ``--height``), e.g. for docs/.

    :param argv: arguments (default ``sys.argv[1:]``).
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rlkit.browser", description=main.__doc__)
    parser.add_argument("page", help="the HTML file")
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("--width", type=int, default=1280, help="window width (default 1280)")
    parser.add_argument("--height", type=int, help="window height (default: the whole page)")
    parser.add_argument(
        "--palette", action="store_true", help="store with 256 colours (a smaller file)"
    )
    args = parser.parse_args(argv)
    try:
        path = screenshot(args.page, args.out, args.width, args.height)
    except BrowserError as err:
        print(f"rlkit.browser: {err}")
        return 2
    if args.palette:
        import io

        from PIL import Image

        from rlkit.io import atomic_write_bytes

        with Image.open(path) as image:
            small = image.convert("RGB").quantize(colors=256)
        buffer = io.BytesIO()
        small.save(buffer, format="PNG", optimize=True)
        atomic_write_bytes(path, buffer.getvalue())
    print(f"screenshot: {path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
