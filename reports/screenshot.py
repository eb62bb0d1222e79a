"""Screenshot a report with the system's Chromium.

Usage: python -m reports.screenshot REPORT.html OUT.png [--width 1280] [--height 900]
       [--viewport | --max-height 12000]
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def chromium_path() -> str | None:
    """The Debian `chromium` binary; Playwright's own browser download is never used."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def take_screenshot(report, out_png, width: int = 1280, height: int = 900, full_page: bool = True,
                    max_height: int = 12000) -> Path:
    """Render REPORT.html in headless Chromium and save a PNG (full page, capped at max_height px)."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise RuntimeError("chromium not found: install Debian's chromium package (apt-get install chromium)")
    report, out_png = Path(report).resolve(), Path(out_png)
    if not report.is_file():
        raise FileNotFoundError(f"{report}: no such report")
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(report.as_uri(), wait_until="load")
            if full_page:
                total = page.evaluate("document.documentElement.scrollHeight")
                clip = {"x": 0, "y": 0, "width": width, "height": min(total, max_height)}
                page.screenshot(path=str(out_png), clip=clip, full_page=True)
            else:
                page.screenshot(path=str(out_png))
        finally:
            browser.close()
    return out_png


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.screenshot", description=__doc__.splitlines()[0])
    parser.add_argument("report")
    parser.add_argument("out_png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--viewport", action="store_true", help="only the first screen, not the full page")
    parser.add_argument("--max-height", type=int, default=12000, help="cut a full-page shot at this many pixels")
    args = parser.parse_args(argv)
    try:
        out = take_screenshot(args.report, args.out_png, args.width, args.height, not args.viewport,
                              args.max_height)
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
