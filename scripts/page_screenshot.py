"""A screenshot of the leaderboard page as a reader's browser shows it.

    python scripts/page_screenshot.py [--page results/leaderboard.html] [--out docs/leaderboard_page.png] [--full]

Opens the page in the system's headless Chromium (Debian's `chromium` and `chromium-driver`,
driven by Selenium, as tests/test_leaderboard_page.py does) in a window 1280 x 1600 pixels, and
saves what it shows (the rules, the ranking and the start of the figure) as a PNG; with --full,
the whole page (the window grown to the page's height, about 12,500 pixels). Nothing is fetched from the
network: the page is static.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars")
WIDTH, HEIGHT = 1280, 1600


@contextlib.contextmanager
def chromium(width: int, height: int):
    """The system's headless Chromium in a window of width x height, with a throwaway profile
    (tests/test_leaderboard_page.py drives the page through it too)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--page", type=Path, default=REPO / "results" / "leaderboard.html")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "leaderboard_page.png")
    ap.add_argument("--full", action="store_true", help="the whole page, not its first 1,600 pixels")
    a = ap.parse_args(argv)
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        print(f"no headless browser ({CHROMIUM}, {CHROMEDRIVER}): apt-get install -y chromium chromium-driver", file=sys.stderr)
        return 1
    with chromium(WIDTH, HEIGHT) as driver:
        driver.get(a.page.resolve().as_uri())
        height = driver.execute_script("return document.documentElement.scrollHeight") if a.full else HEIGHT
        driver.set_window_size(WIDTH, height)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_bytes(driver.get_screenshot_as_png())
    print(f"{a.out}: {WIDTH} x {height} pixels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
