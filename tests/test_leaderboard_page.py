"""results/leaderboard.html (attractor_bench/page.py): rendered from the committed records and
checked in a real headless browser (Debian's Chromium driven by Selenium through the system
chromedriver): every committed row and card is there, a click on a header sorts, the page does not
overflow a 1280-pixel window, its figures load and its screenshot has the page's shape. Without a
browser those tests skip, naming the install command; the escaping test needs none."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from attractor_bench.page import PAGE, write_leaderboard
from attractor_bench.protocol import PROTOCOL
from conftest import as_current
from test_leaderboard import attack, model, write_run

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
INSTALL = "apt-get update && apt-get install -y chromium chromium-driver, and pip install -e '.[test]' (selenium)"
WIDTH, HEIGHT = 1280, 900


@pytest.fixture(scope="module")
def committed(tmp_path_factory) -> Path:
    """The committed records' leaderboard as `attractor-bench leaderboard` writes it (under the
    protocol), afresh into a copy of results/."""
    results = tmp_path_factory.mktemp("page") / "results"
    shutil.copytree(REPO / "results", results)
    write_leaderboard(results, PROTOCOL.label)
    return results


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """The committed records read as current (`conftest.as_current`: until the regeneration, issue
    38's bumps leave every committed run stale) and every run ranked: a board with rows to sort."""
    results = tmp_path_factory.mktemp("page_rows") / "results"
    shutil.copytree(REPO / "results", results)
    write_leaderboard(as_current(results))
    return results


@pytest.fixture(scope="module")
def browser(rendered):
    pytest.importorskip("selenium.webdriver", reason=f"selenium is not installed: {INSTALL}")
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip(f"no headless browser here ({CHROMIUM}, {CHROMEDRIVER}): {INSTALL}")
    spec = importlib.util.spec_from_file_location("page_screenshot", REPO / "scripts" / "page_screenshot.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)  # its `chromium`: the same browser settings as the committed screenshot
    with script.chromium(WIDTH, HEIGHT) as driver:
        driver.get((rendered / PAGE).as_uri())
        yield driver


def _models(driver) -> list[str]:
    return driver.execute_script("return Array.from(document.querySelectorAll('#board tbody tr'), "
                                 "r => r.cells[1].textContent.trim())")


def test_the_committed_page_is_the_committed_records_rendered(committed):
    """results/leaderboard.html is what `attractor-bench leaderboard` writes from the committed runs."""
    assert (REPO / "results" / PAGE).read_bytes() == (committed / PAGE).read_bytes()


def test_every_committed_row_and_card_is_on_the_page_in_rank_order(browser, rendered):
    rows = json.loads((rendered / "LEADERBOARD.json").read_text())["rows"]
    assert len(rows) >= 10
    assert _models(browser) == [r["model"] for r in rows]
    cards = browser.execute_script("return Array.from(document.querySelectorAll('article.card'), c => c.id)")
    assert cards == [f"model-{r['model']}" for r in rows]
    ranks = browser.execute_script("return Array.from(document.querySelectorAll('#board tbody tr'), "
                                   "r => r.cells[0].textContent.trim())")
    assert ranks == [str(r["rank"]) for r in rows]
    assert len(browser.find_elements("css selector", "#board thead th")) <= 9


def test_clicking_a_header_sorts_its_column_both_ways(browser, rendered):
    rows = json.loads((rendered / "LEADERBOARD.json").read_text())["rows"]
    value = {r["model"]: r["numbers"]["worst_case_0.1"]["value"] for r in rows}
    header = next(th for th in browser.find_elements("css selector", "#board thead th")
                  if th.text.startswith("worst case L-inf 0.1"))
    measured = {m: v for m, v in value.items() if v is not None}
    assert len(measured) >= 2  # not vacuous: at least two rows to order
    header.click()
    up = _models(browser)  # rows without the number (stale or not measured) go last either way
    assert up[:len(measured)] == sorted(measured, key=lambda m: (measured[m], up.index(m))) and up != [r["model"] for r in rows]
    assert set(up[len(measured):]) == set(value) - set(measured)
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert [value[m] for m in _models(browser)][:len(measured)] == sorted(measured.values(), reverse=True)
    browser.find_element("css selector", "#board thead th").click()  # back to rank order
    assert _models(browser) == [r["model"] for r in rows]


def test_the_page_fits_1280_pixels_and_its_figures_load(browser):
    inner, scroll = browser.execute_script("return [window.innerWidth, document.documentElement.scrollWidth]")
    assert inner == WIDTH and scroll <= inner
    images = browser.execute_script("return Array.from(document.images, i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    assert images and all(done and width > 0 for _, done, width in images), images
    assert all(not src.startswith(("http:", "https:", "//")) for src, _, _ in images)


def test_the_screenshot_has_the_page_s_shape(browser, tmp_path):
    browser.execute_script("window.scrollTo(0, 0)")
    shot = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    assert shot.size == tuple(browser.execute_script("return [window.innerWidth, window.innerHeight]"))
    assert shot.width == WIDTH and shot.height > HEIGHT // 2  # the viewport, less the window's own bars
    shot.save(tmp_path / "leaderboard_page.png")
    colours = shot.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50  # text, bars and rules, not a blank page
    white = max(colours or [(0, None)])[0] / (shot.width * shot.height)
    assert 0.5 < white < 0.98  # mostly white paper with content on it


def test_the_page_escapes_names_reasons_and_commands(tmp_path):
    """Autoescape: a reason or command with markup shows as text, never as markup."""
    res = tmp_path / "results"
    evil = "<script>alert(1)</script>"
    write_run(res, "s", {"m": model(flags={"flag_zero_gradients": 1}, reasons=[evil], wc={0.1: (0.5, 0.4, 100)})},
              {"pgd": attack()})
    summary = res / "s" / "summary.json"
    summary.write_text(summary.read_text().replace("attractor-bench run suites/s.yaml", "run <b>bold</b> & more"))
    write_leaderboard(res)
    page = (res / PAGE).read_text()
    assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "run &lt;b&gt;bold&lt;/b&gt; &amp; more" in page
    assert "environment: not recorded" in page and "http" not in page.replace("http-equiv", "")


def test_a_board_without_current_rows_drops_the_earlier_figure(tmp_path):
    """Every record stale (as the committed ones are until the regeneration): no row to draw, so an
    earlier board's figure, which would show numbers the tables no longer have, is removed."""
    results = tmp_path / "results"
    shutil.copytree(REPO / "results", results)
    for path in [*results.glob("*/summary.json"), *results.glob("*/ood.json"), results / "CARRIED_OVER.json"]:
        doc = json.loads(path.read_text())
        if isinstance(doc.get("components"), dict):
            doc["components"]["cell"] = 0  # made with a version older than any: stale
            path.write_text(json.dumps(doc))
    for suffix in (".png", ".svg"):
        (results / "leaderboard_worst_case").with_suffix(suffix).write_bytes(b"an earlier figure")
    board, written = write_leaderboard(results, PROTOCOL.label)
    assert not board.rows and not list(results.glob("leaderboard_worst_case.*"))
    assert all(not p.name.startswith("leaderboard_worst_case") for p in written)
