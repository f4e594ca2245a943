"""The HTML report of a two-symbol run in Debian's Chromium (Playwright): it asks for nothing but
its own file, draws every figure with no console error, shows the chosen symbol's candles and
fills with the strategy's plotted averages over them (the second symbol has none), filters the
fills table by symbol; its PnL by symbol adds up to the equity change."""

import shutil

import pytest

from engine.analysis.by_symbol import by_symbol_for_run
from engine.analysis.html_report import write_html_report
from engine.analysis.metrics import metrics_for_run
from engine.ledger.reader import LedgerReader
from tests.helpers.ledgers import SECOND, as_two_symbols, sample_ledger

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    path = sample_ledger(tmp_path_factory.mktemp("ledger") / "l.db", 5, 8)
    as_two_symbols(path, 2)
    return path


def test_the_symbols_pnl_adds_up_to_the_equity_change(ledger):
    reader = LedgerReader(ledger)
    try:
        rows = [by_symbol_for_run(reader, 1)["BTCUSDT"]]
        metrics = metrics_for_run(reader, 1)
        cash = reader.run(1)["initial_cash"]
    finally:
        reader.close()
    assert rows[0]["fills"] == metrics["n_fills"] and rows[0]["fees"] == pytest.approx(metrics["fees"])
    assert rows[0]["pnl"] == pytest.approx(metrics["final_equity"] - cash)


def test_a_two_symbol_report_opens_offline_with_every_figure_drawn(ledger, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    reader = LedgerReader(ledger)
    try:
        out = write_html_report(reader, 2, metrics_for_run(reader, 2), tmp_path / "r.html")
    finally:
        reader.close()
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                    headless=True, args=FLAGS)
        page = ctx.new_page()
        errors: list[str] = []
        asked: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: asked.append(r.url))
        page.goto(out.resolve().as_uri())
        page.wait_for_function("document.querySelectorAll('[data-drawn=true]').length === 4", timeout=60_000)
        assert page.locator("body").get_attribute("data-errors") == "0"
        price = page.locator("[data-figure=price]")
        assert price.get_attribute("data-symbol") == "BTCUSDT"
        assert int(price.get_attribute("data-markers")) > 0
        assert price.get_attribute("data-plots") == "sma_fast,sma_slow"
        page.select_option("#price-symbol", SECOND)
        page.wait_for_function(f"document.querySelector('[data-figure=price]').dataset.symbol === '{SECOND}'")
        assert int(price.get_attribute("data-markers")) > 0
        assert price.get_attribute("data-plots") == ""  # as_two_symbols copies no plot rows
        every = page.locator("#fills tbody tr:visible").count()
        page.select_option("#fills-symbol", SECOND)
        shown = page.locator("#fills tbody tr:visible td:nth-child(2)").all_text_contents()
        assert 0 < len(shown) < every and set(shown) == {SECOND}
        assert page.locator("#by-symbol tbody tr").count() == 3  # two symbols and their total
        assert not errors, errors
        assert asked == [out.resolve().as_uri()], asked
        ctx.close()
