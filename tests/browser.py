"""Headless Chromium for the report tests: open a report offline and screenshot its figures."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """The chromium binary; skips the test without one, unless WHYLAB_REQUIRE_BROWSER is set."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("WHYLAB_REQUIRE_BROWSER"):
            pytest.fail("chromium is required (WHYLAB_REQUIRE_BROWSER is set) but not installed")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    return found


@dataclass(frozen=True)
class FigureShot:
    alt: str
    loaded: bool
    shown_width: float
    screenshot: Path
    distinct_colours: int  # in the screenshot: 1 means a blank box
    layout_warning: str  # the report's "Layout check: ..." line under the figure, "" when none


def figure_shots(report: Path, out_dir: Path) -> list[FigureShot]:
    """Open ``report`` offline, unfold every folded section (as a reader who opens the evidence),
    and screenshot every figure image as the browser draws it."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    shots: list[FigureShot] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(report.as_uri(), wait_until="load")
        page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
        images = page.locator("figure img")
        for i in range(images.count()):
            img = images.nth(i)
            img.scroll_into_view_if_needed()
            path = out_dir / f"figure-{i:03d}.png"
            img.screenshot(path=str(path))
            alt, loaded, width, warning = img.evaluate(
                "i => [i.alt, i.complete && i.naturalWidth > 0, i.getBoundingClientRect().width,"
                " (i.parentElement.querySelector('.layout-warning') || {textContent: ''}).textContent]"
            )
            with Image.open(path) as shot:
                colours = shot.convert("RGB").getcolors(maxcolors=1 << 16)
            shots.append(
                FigureShot(
                    alt=str(alt),
                    loaded=bool(loaded),
                    shown_width=float(width),
                    screenshot=path,
                    distinct_colours=len(colours) if colours is not None else 1 << 16,
                    layout_warning=str(warning),
                )
            )
        browser.close()
    return shots


@dataclass(frozen=True)
class HangulCheck:
    embedded_face_status: list[str]  # status of each @font-face "WhylabHangul" in the page
    glyph_shots: dict[str, bytes]  # Hangul character -> its screenshot (PNG bytes) in the page's font


def hangul_check(report: Path, chars: str) -> HangulCheck:
    """Open ``report`` offline, wait for its fonts, and screenshot each of ``chars`` drawn large in
    the page's own font stack: distinct characters must give distinct pictures (a missing font
    draws every character as the same empty box, "tofu")."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(report.as_uri(), wait_until="load")
        page.evaluate(
            """chars => {
                const box = document.createElement('div');
                box.id = 'hangul-probe';
                box.style.cssText = 'position:fixed;top:0;left:0;background:#fff;z-index:9999;font-size:48px';
                for (const c of chars) {
                    const s = document.createElement('span');
                    s.textContent = c;
                    s.style.cssText = 'display:inline-block;padding:4px';
                    box.appendChild(s);
                }
                document.body.appendChild(box);
            }""",
            chars,
        )
        page.evaluate("document.fonts.ready.then(() => true)")
        status = page.evaluate(
            "Array.from(document.fonts).filter(f => f.family.replace(/\"/g, '') === 'WhylabHangul').map(f => f.status)"
        )
        spans = page.locator("#hangul-probe span")
        shots = {chars[i]: spans.nth(i).screenshot() for i in range(spans.count())}
        browser.close()
    return HangulCheck([str(s) for s in status], shots)


def folded_height(
    report: Path, first_screen: Path, width: int = 1280, height: int = 900
) -> tuple[float, int]:
    """Open ``report`` offline in a ``width`` × ``height`` window as it first shows (every
    ``<details>`` as the page leaves it), save the first screen to ``first_screen``, and return
    the page's full height in CSS pixels with the number of ``<details>`` open."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(report.as_uri(), wait_until="load")
        page.evaluate("document.fonts.ready.then(() => true)")
        page.screenshot(path=str(first_screen))
        full = page.evaluate("Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)")
        opened = page.evaluate("document.querySelectorAll('details[open]').length")
        browser.close()
    return float(full), int(opened)
