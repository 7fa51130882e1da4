"""Render an HTML file (a `tagger predict --output-format html` page or a `tagger evaluate --report` page) to
a PNG with headless Chromium, offline: the screenshots under docs/.

    tagger evaluate runs/conll2003 ../shared/data/conll2003/test.txt --report /tmp/report.html
    python bench/screenshot.py /tmp/report.html docs/report.png --width 1100 --height 1400

Chromium is /usr/bin/chromium (Debian's package) unless --chromium says otherwise. It runs with a throwaway
profile and its background networking off; the page itself forbids every fetch (its CSP).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def screenshot(html: Path, png: Path, width: int, height: int, chromium: str) -> None:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        command = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                   f"--screenshot={png.resolve()}", html.resolve().as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not png.exists():
        sys.exit(f"error: chromium failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    if not args.html.is_file():
        sys.exit(f"error: {args.html}: no such file")
    args.png.parent.mkdir(parents=True, exist_ok=True)
    screenshot(args.html, args.png, args.width, args.height, args.chromium)
    print(f"wrote {args.png}", file=sys.stderr)


if __name__ == "__main__":
    main()
