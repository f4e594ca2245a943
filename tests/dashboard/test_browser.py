"""The dashboard in Debian's Chromium (driven by Playwright, no downloaded browser): every chart
of a run page drawn with no console error, a fill marker's tooltip on hover, the symbol
selector and the fills filter, the strategy's plotted averages over the candles, a zoom asking
the server for finer bars, the compare page's curves, and hostile ledger text shown as text."""

import json
import shutil
import signal
import sqlite3

import pytest

from tests.dashboard.test_server import HOSTILE, _serve
from tests.helpers.ledgers import SECOND, as_two_symbols, sample_ledger

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
DRAWN = ("document.getElementById('chart').dataset.drawn === 'true' && "
         "document.body.dataset.panels === 'drawn'")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    ledger = sample_ledger(tmp_path_factory.mktemp("ledger") / "l.db", 5, 8)
    as_two_symbols(ledger, 2)
    with sqlite3.connect(ledger) as db:
        db.execute("UPDATE runs SET params = ? WHERE id = 1", (json.dumps({"note": HOSTILE}),))
    proc, url = _serve(ledger)
    yield url.rstrip("/")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


@pytest.fixture
def browser(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                    headless=True, args=FLAGS,
                                                    viewport={"width": 1200, "height": 900})
        page = ctx.new_page()
        page.errors = []
        page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.on("dialog", lambda d: (page.errors.append(f"dialog {d.message}"), d.dismiss()))
        yield page
        ctx.close()


def test_a_run_page_draws_every_chart_and_a_fill_marker_shows_its_order(served, browser):
    page = browser
    page.goto(served + "/runs/2")
    page.wait_for_function(DRAWN, timeout=60_000)
    for chart in ("chart", "equity", "drawdown", "daily"):
        assert page.locator(f"#{chart} canvas").count() > 0, chart
    for chart in ("equity", "drawdown", "daily"):
        assert page.locator(f"#{chart}").get_attribute("data-drawn") == "true"
    assert int(page.locator("#chart").get_attribute("data-markers")) > 0
    page.locator("#chart").scroll_into_view_if_needed()
    fill = page.evaluate("window.papertapeRun.fills()[3]")
    at = page.evaluate("window.papertapeRun.markerPoint(3)")
    box = page.locator("#chart").bounding_box()
    assert page.locator("#tooltip").is_hidden()
    page.mouse.move(box["x"] + at["x"] - 30, box["y"] + at["y"])
    page.mouse.move(box["x"] + at["x"], box["y"] + at["y"], steps=4)
    page.wait_for_function("!document.getElementById('tooltip').hidden", timeout=10_000)
    tip = page.locator("#tooltip").text_content()
    assert f"order {fill['client_order_id']}" in tip and f"@ {fill['price']}" in tip
    assert "fee " in tip and "PnL " in tip
    assert int(page.locator("#orders").get_attribute("data-rows")) > 0
    assert "Total return" in page.locator("#metrics").text_content()
    assert page.locator("#rejections-note").text_content() == "none in this run"
    assert not page.errors, page.errors


def test_the_symbol_selector_and_fills_filter_show_one_symbol(served, browser):
    page = browser
    page.goto(served + "/runs/2")
    page.wait_for_function(DRAWN, timeout=60_000)
    every = int(page.locator("#fills").get_attribute("data-rows"))
    page.select_option("#fill-symbol", SECOND)
    page.wait_for_function(f"document.getElementById('fills').dataset.rows !== '{every}'", timeout=30_000)
    symbols = page.locator("#fills tbody tr td:nth-child(2)").all_text_contents()
    assert symbols and set(symbols) == {SECOND}
    page.select_option("#symbol", SECOND)
    page.wait_for_function(DRAWN, timeout=60_000)
    assert page.locator("#status").text_content().startswith(f"{SECOND}:")
    shown = page.evaluate("window.papertapeRun.fills().map(f => f.symbol)")
    assert shown and set(shown) == {SECOND}
    assert not page.errors, page.errors


def test_the_strategys_plotted_averages_are_lines_over_the_candles(served, browser):
    page = browser
    page.goto(served + "/runs/2")
    page.wait_for_function(DRAWN, timeout=60_000)
    assert page.locator("#chart").get_attribute("data-plots") == "sma_fast,sma_slow"
    drawn = page.evaluate("window.papertapeRun.plots()")
    bars = json.loads(page.evaluate(f"fetch('{served}/api/runs/2/bars?width=' + "
                                    "Math.max(50, document.getElementById('chart').clientWidth))"
                                    ".then(r => r.text())"))
    for name in ("sma_fast", "sma_slow"):
        values = zip(bars["t"], bars["plots"][name], strict=True)
        expected = [{"time": t / 1000, "value": v} for t, v in values if v is not None]
        assert len(expected) > 100 and drawn[name] == expected, name
    page.select_option("#symbol", SECOND)  # none plotted for it: the lines empty
    page.wait_for_function("document.getElementById('chart').dataset.plots === ''", timeout=60_000)
    assert not page.errors, page.errors


def test_zooming_the_price_chart_asks_for_finer_bars(served, browser):
    page = browser
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/bars" in r.url else None)
    page.goto(served + "/runs/1")
    page.wait_for_function(DRAWN, timeout=60_000)
    page.locator("#chart").scroll_into_view_if_needed()
    box = page.locator("#chart").bounding_box()
    assert not any("start=" in u for u in asked), asked
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 200)
    for _ in range(5):
        page.mouse.wheel(0, -400)
    page.wait_for_function("document.getElementById('status').textContent.includes('drawn')", timeout=60_000)
    page.wait_for_timeout(1500)
    assert any("start=" in u for u in asked), asked
    assert not page.errors, page.errors


def test_hostile_ledger_text_is_shown_as_text_and_compare_draws_both_curves(served, browser):
    page = browser
    page.goto(served + "/runs/1")
    page.wait_for_function(DRAWN, timeout=60_000)
    assert HOSTILE in page.locator("header dl").text_content()
    assert page.locator("header img").count() == 0
    page.goto(served + "/compare?runs=1,2")
    page.wait_for_function("document.getElementById('status').textContent.includes('2 curves')",
                           timeout=60_000)
    assert page.locator("#compare-metrics img").count() == 0 and HOSTILE in page.content().replace(
        "&lt;", "<").replace("&gt;", ">")
    page.goto(served + "/")
    assert page.locator("#runs tbody tr").count() == 2
    page.fill("#filter", "nothing-matches-this")
    assert page.locator("#runs tbody tr:visible").count() == 0
    assert not page.errors, page.errors
