"""Open report/results.html in headless Chromium: every result row rendered, no console errors, a screenshot.

    python .ci/check_html.py artifacts/report/results.html [--screenshot out.png]

The rows expected are the results in the page's own embedded JSON; the page must render one
table row per result, set data-rendered, and leave its error box hidden. Chromium runs with no
network (the page is self-contained) in a throwaway profile. Exit 0 when all holds.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import cast

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-extensions",
    "--proxy-server=127.0.0.1:9",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=5000",
]
CONSOLE = re.compile(r"CONSOLE\(\d+\)\]? ?\"?(.*)|Uncaught .*")


class Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str | None, str | None]] = []
        self.rendered: str | None = None
        self.errors_hidden, self.errors_text, self._in_errors = True, "", False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and "data-key" in a:
            self.rows.append((a["data-key"], a.get("data-status")))
        if tag == "body":
            self.rendered = a.get("data-rendered")
        if a.get("id") == "errors":
            self.errors_hidden, self._in_errors = "hidden" in a, True

    def handle_endtag(self, tag: str) -> None:
        if tag == "div":
            self._in_errors = False

    def handle_data(self, data: str) -> None:
        if self._in_errors:
            self.errors_text += data


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise SystemExit("check_html: no chromium on PATH (Debian: apt-get install chromium)")


def run(page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )


def check(page: Path, screenshot: Path | None) -> list[str]:
    html = page.read_text(encoding="utf-8")
    data = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', html, re.S)
    expected = [(r["key"], r["status"]) for r in json.loads(cast(re.Match[str], data).group(1).replace("<\\/", "</"))["results"]]
    proc = run(page, "--dump-dom")
    dom = Dom()
    dom.feed(proc.stdout)
    problems = []
    if sorted(dom.rows) != sorted(expected):
        problems.append(f"rendered rows {sorted(dom.rows)} != the report's {sorted(expected)}")
    if dom.rendered != str(len(expected)):
        problems.append(f"page did not finish rendering (data-rendered={dom.rendered!r})")
    if not dom.errors_hidden or dom.errors_text.strip():
        problems.append(f"the page reported errors: {dom.errors_text.strip()!r}")
    console = [m.group(0) for line in proc.stderr.splitlines() if (m := CONSOLE.search(line))]
    if console:
        problems.append(f"console messages: {console}")
    if screenshot:
        shot = run(page, f"--screenshot={screenshot.resolve()}", "--window-size=1400,2200", "--hide-scrollbars")
        if not screenshot.is_file() or screenshot.stat().st_size == 0:
            problems.append(f"no screenshot written: {shot.stderr.strip().splitlines()[-1:]}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--screenshot", type=Path)
    opts = parser.parse_args()
    problems = check(opts.page, opts.screenshot)
    for p in problems:
        print(f"check_html: {opts.page}: {p}", file=sys.stderr)
    if not problems:
        print(
            f"check_html: {opts.page}: every row rendered, no console errors"
            + (f", screenshot {opts.screenshot}" if opts.screenshot else "")
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
