"""The HTML report: built from a real backtest's ledger, checked as a file (offline, escaped,
parseable data) and rendered in headless Chromium (every figure drawn, no script errors).

Without Chromium the browser checks are skipped, unless ``PAPERTAPE_REQUIRE_CHROMIUM=1``
(set in CI), which makes a missing browser a failure.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from engine.analysis.html_report import MAX_FILL_ROWS, MAX_POINTS, write_html_report
from engine.analysis.metrics import metrics_for_run
from engine.cli import main
from engine.core.config import load_config
from engine.ledger.reader import LedgerReader
from engine.ledger.schema import FeedGapRow, Run, open_engine
from engine.run.backtest import run_backtest

INJECTION = "</script><script>alert(1)</script>"
DAY_NS = 86400 * 10**9
START_NS = 1_748_736_000 * 10**9  # 2025-06-01 UTC, the sample's first day


@pytest.fixture(scope="module")
def ledger(tmp_path_factory) -> Path:
    """Run 1: a day of the sample with sma_cross (it trades). Run 2: the same day with a
    slow average longer than the day (no fills), then given a hostile strategy name,
    parameter and feed-gap detail."""
    path = tmp_path_factory.mktemp("ledger") / "l.db"
    base = [f"ledger.path={path}", "run.end=2025-06-02"]
    assert run_backtest(load_config(None, base), progress=False).fills > 0
    quiet = run_backtest(load_config(None, [*base, "strategy.params.slow=5000"]), progress=False)
    assert quiet.fills == 0
    engine = open_engine(path)
    with engine.begin() as conn:
        conn.execute(sa.update(Run).where(Run.id == quiet.run_id).values(
            strategy=f"evil{INJECTION}", params=json.dumps({"note": INJECTION, "fast": 10})))
        conn.execute(sa.insert(FeedGapRow).values(
            run_id=quiet.run_id, symbol="BTCUSDT", status="unfilled", gap_from=START_NS + 3600 * 10**9,
            gap_to=START_NS + 5400 * 10**9, detail=f"REST backfill failed {INJECTION}", ts=START_NS))
    engine.dispose()
    return path


def embedded_data(page: str) -> dict:
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert block, "no embedded data block"
    return json.loads(block.group(1))


def assert_offline(page: str) -> None:
    external = re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//"""
                          r"""|@import|<link|<img|<iframe""", page, re.I)
    assert external == []


def render(page: Path, tmp_path: Path) -> str:
    """The DOM of ``page`` after its scripts ran in headless Chromium."""
    browser = shutil.which("chromium")
    if browser is None:
        if os.environ.get("PAPERTAPE_REQUIRE_CHROMIUM") == "1":
            pytest.fail("chromium not found on PATH and PAPERTAPE_REQUIRE_CHROMIUM=1")
        pytest.skip("chromium not installed (apt-get install chromium); "
                    "PAPERTAPE_REQUIRE_CHROMIUM=1 makes this a failure")
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000",
         "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def assert_drawn(dom: str) -> None:
    figures = re.findall(r"<div[^>]*data-figure=[^>]*>", dom)
    assert len(figures) == 4, dom[:2000]
    for tag in figures:
        assert 'data-drawn="true"' in tag, tag
    errors = re.search(r'<pre id="errors"[^>]*>(.*?)</pre>', dom, re.S).group(1)
    assert re.search(r'<body[^>]*data-errors="0"', dom), errors
    assert errors == ""


def test_report_of_a_sample_backtest(ledger, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", "--ledger", str(ledger), "--run", "1", "--out", str(out)]) == 0
    page = out.read_text()
    assert_offline(page)
    data = embedded_data(page)
    reader = LedgerReader(ledger)
    fills, bars = reader.fills([1]), reader.bars([1])
    reader.close()
    assert data["run"]["strategy"] == "sma_cross"
    assert len(data["equity"]["t"]) == len(bars) + 1  # the initial cash, then one per bar
    assert data["symbols"] == ["BTCUSDT"]
    assert len(data["fills"]["BTCUSDT"]["t"]) == len(fills)
    assert len(data["price"]["BTCUSDT"]["c"]) == len(bars)
    assert min(data["drawdown"]["v"]) < 0
    assert page.count("<tr class='buy'") + page.count("<tr class='sell'") == len(fills)
    assert "LightweightCharts" in page and "<canvas" not in page
    assert "No feed gaps recorded." in page
    assert "525,600 periods a year" in page  # the annualisation is stated
    assert_drawn(render(out, tmp_path))


def test_no_fills_gaps_and_hostile_text(ledger, tmp_path):
    reader = LedgerReader(ledger)
    try:
        out = write_html_report(reader, 2, metrics_for_run(reader, 2), tmp_path / "hostile.html")
    finally:
        reader.close()
    page = out.read_text()
    assert_offline(page)
    assert INJECTION not in page and "<script>alert" not in page
    assert html.escape(INJECTION) in page  # shown, as text
    assert page.count("<script") == 4
    data = embedded_data(page)
    assert data["run"]["strategy"] == f"evil{INJECTION}"
    assert json.loads(data["run"]["params"])["note"] == INJECTION
    assert data["fills"] == {"BTCUSDT": {"t": [], "p": [], "s": []}}
    assert "No fills in this run." in page
    assert "1 gap record(s)" in page and "REST backfill failed" in page
    assert data["gaps"] == [[(START_NS + 3600 * 10**9) // 10**6, (START_NS + 5400 * 10**9) // 10**6]]
    dom = render(out, tmp_path)
    assert_drawn(dom)
    assert dom.count("<script") == 4


class BigReader:
    """A million one-minute bars and equity snapshots with one deep, one-bar drawdown, and
    10,000 fills: the shape of a long run, without running one."""

    def __init__(self) -> None:
        n, self.step = 1_000_000, 60 * 10**9
        rng = np.random.default_rng(7)
        self.close = 100_000 + np.cumsum(rng.normal(0, 20, n))
        self.equity_values = 10_000 + np.cumsum(rng.normal(0, 0.5, n))
        self.equity_values[612_345] -= 4_000
        self.n = n

    def chain(self, run_id: int) -> list[int]:
        return [run_id]

    def run(self, run_id: int) -> dict:
        return {"id": run_id, "kind": "backtest", "status": "finished", "strategy": "big", "params": "{}",
                "symbol": "BTCUSDT", "category": "linear", "interval": "1m", "data_start": START_NS,
                "data_end": START_NS + self.n * self.step, "initial_cash": 10_000.0, "code_version": "test",
                "error": None}

    def equity(self, ids: list[int]) -> pd.DataFrame:
        return pd.DataFrame({"ts": START_NS + self.step * np.arange(1, self.n + 1),
                             "equity": self.equity_values, "position": 0.0, "symbol": "BTCUSDT"})

    def plots(self, ids: list[int], symbol: str) -> dict:
        """A strategy that plotted each bar's close at its close."""
        return {"close": (START_NS + self.step * np.arange(1, self.n + 1), self.close)}

    def bars(self, ids: list[int]) -> pd.DataFrame:
        return pd.DataFrame({"symbol": "BTCUSDT", "open_time": START_NS + self.step * np.arange(self.n),
                             "open": self.close, "high": self.close + 5, "low": self.close - 5,
                             "close": self.close})

    def fills(self, ids: list[int]) -> pd.DataFrame:
        at = np.arange(0, self.n, 100)
        side = np.where(np.arange(len(at)) % 2, -1, 1)
        return pd.DataFrame({"symbol": "BTCUSDT", "ts_event": START_NS + self.step * at, "side": side,
                             "qty": 0.01, "price": self.close[at], "fee": 0.5, "liquidity": "taker",
                             "realized_pnl": 0.0, "position": np.where(side > 0, 0.01, 0.0),
                             "avg_price": self.close[at]})

    def funding(self, ids: list[int]) -> pd.DataFrame:
        return pd.DataFrame(columns=["symbol", "payment"])

    def exposure(self, ids: list[int]) -> pd.DataFrame:
        if not self.n:
            return pd.DataFrame(columns=["exposure", "last_mark"])
        return pd.DataFrame({"exposure": [0.5], "last_mark": [float(self.close[-1])]}, index=["BTCUSDT"])

    def gaps(self, ids: list[int]) -> pd.DataFrame:
        return pd.DataFrame(columns=["status", "gap_from", "gap_to", "detail"])


def test_a_million_bars_make_a_small_report(tmp_path):
    reader = BigReader()
    out = write_html_report(reader, 1, {}, tmp_path / "big.html")
    assert out.stat().st_size < 2_000_000
    page = out.read_text()
    data = embedded_data(page)
    for series in (data["equity"], data["drawdown"], data["price"]["BTCUSDT"], data["fills"]["BTCUSDT"]):
        assert len(series["t"]) <= MAX_POINTS
    assert data["plots"]["BTCUSDT"]["close"] == data["price"]["BTCUSDT"]["c"]  # each candle's last close
    curve = np.concatenate(([10_000.0], reader.equity_values))
    deepest = float(np.min(curve / np.maximum.accumulate(curve) - 1))
    assert min(data["drawdown"]["v"]) == pytest.approx(deepest)
    assert min(data["equity"]["v"]) == pytest.approx(float(reader.equity_values.min()))
    assert page.count("<tr class='buy'") + page.count("<tr class='sell'") == MAX_FILL_ROWS
    assert f"the first {10_000 - MAX_FILL_ROWS:,} are left out" in page
    assert_drawn(render(out, tmp_path))


class EmptyReader(BigReader):
    """A run that failed before its first bar: no equity, bars, fills or gaps."""

    def __init__(self) -> None:
        self.n, self.step = 0, 60 * 10**9

    def run(self, run_id: int) -> dict:
        return {**super().run(run_id), "status": "failed", "error": "boom <b>bold</b>"}

    def equity(self, ids: list[int]) -> pd.DataFrame:
        return pd.DataFrame(columns=["ts", "equity", "position", "symbol"])

    def bars(self, ids: list[int]) -> pd.DataFrame:
        return pd.DataFrame(columns=["symbol", "open_time", "open", "high", "low", "close"])

    def plots(self, ids: list[int], symbol: str) -> dict:
        return {}

    def fills(self, ids: list[int]) -> pd.DataFrame:
        return pd.DataFrame(columns=["symbol", "ts_event", "side", "qty", "price", "fee", "liquidity",
                                     "realized_pnl", "position", "avg_price"])


def test_a_run_without_data_draws_empty_figures(tmp_path):
    out = write_html_report(EmptyReader(), 1, {}, tmp_path / "empty.html")
    page = out.read_text()
    assert "boom &lt;b&gt;bold&lt;/b&gt;" in page and "class='status bad'" in page
    assert_drawn(render(out, tmp_path))
