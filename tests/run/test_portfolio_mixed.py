"""A backtest mixing categories: ``spot:BTCUSDT`` beside the BTCUSDT perpetual in one linear
account (a basis trade), through the real replay path. Each market pays its own category's
fees, only the perpetual pays funding, the ledger names both, and the spot stream is a data
path of its own: a planted future spot trade changes no earlier decision."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from engine.core.config import load_config
from engine.run.backtest import run_backtest
from strategies.base import Strategy
from tests.helpers.archive import write_spot
from tests.helpers.broker import read_table, write_trade_archive
from tests.run import test_portfolio_backtest as portfolio

SPOT, PERP = "spot:BTCUSDT", "BTCUSDT"
DAY = "2025-06-01"


def spot_copy(linear, path, premium: float = 1.0005, planted: tuple[float, float] | None = None):
    """A spot archive of the perpetual's trades at a premium, perhaps with one trade planted."""
    frame = pd.read_csv(linear)
    ts, prices = frame["timestamp"].to_numpy(), frame["price"].to_numpy() * premium
    sizes, sides = frame["size"].to_numpy(), np.where(frame["side"] == "Buy", 1, -1)
    if planted is not None:
        at = int(np.searchsorted(ts, planted[0]))
        ts, prices = np.insert(ts, at, planted[0]), np.insert(prices, at, planted[1])
        sizes, sides = np.insert(sizes, at, 0.01), np.insert(sides, at, 1)
    return write_spot(path, ts, prices, sizes, sides)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    linear = write_trade_archive(root, DAY, 12_000, seed=5, vol=0.0008)
    (root / "spot").mkdir()
    return {PERP: linear, SPOT: spot_copy(linear, root / "spot" / f"BTCUSDT_{DAY}.csv")}


def config(tmp_path, data, *settings, name="l.db"):
    cfg = load_config(None, [f"ledger.path={tmp_path / name}", *settings])
    return replace(cfg, run=replace(cfg.run, data=tuple(str(p) for p in data), symbols=(SPOT, PERP)))


class Basis(Strategy):
    """Buys 0.5 coin and shorts 0.5 of the perpetual at the first bar, then holds."""

    placed = False

    def on_bars(self, bars) -> None:
        if not self.placed:
            self.placed = True
            self.target_position(0.5, symbol=SPOT)
            self.target_position(-0.5, symbol=PERP)


def test_a_basis_trade_pays_each_categorys_fees_and_only_the_perpetuals_funding(tmp_path, data):
    settings = ("strategy.name=tests.run.test_portfolio_mixed:Basis", "account.cash=50000",
                "account.leverage=5", "broker.funding_rate=0.0001")
    result = run_backtest(config(tmp_path, data.values(), *settings), progress=False)
    assert result.status == "finished" and result.extra["symbols"] == [SPOT, PERP]
    db = tmp_path / "l.db"
    run = read_table(db, "SELECT symbol, category FROM runs WHERE id = ?", (result.run_id,))
    assert run.to_dict("records") == [{"symbol": "spot:BTCUSDT,BTCUSDT", "category": "linear"}]
    fills = read_table(db, "SELECT symbol, side, qty, price, fee, liquidity FROM fills WHERE run_id = ? "
                       "ORDER BY id", (result.run_id,))
    assert list(zip(fills.symbol, fills.side, fills.qty, strict=True)) == [(SPOT, 1, 0.5), (PERP, -1, 0.5)]
    assert (fills.liquidity == "taker").all()
    rates = dict(zip(fills.symbol, fills.fee / (fills.qty * fills.price), strict=True))
    assert rates[SPOT] == pytest.approx(0.001) and rates[PERP] == pytest.approx(0.00055)
    funding = read_table(db, "SELECT symbol, position, mark_price, payment FROM funding WHERE run_id = ?",
                         (result.run_id,))
    assert len(funding) >= 2 and set(funding.symbol) == {PERP}  # 08:00 and 16:00 at least
    assert funding.payment.to_numpy() == pytest.approx(-0.5 * funding.mark_price.to_numpy() * 0.0001)
    by = result.extra["by_symbol"]
    assert by[SPOT]["funding"] == 0.0 and by[PERP]["funding"] == pytest.approx(funding.payment.sum())
    equity = read_table(db, "SELECT symbol, position, mark_price, margin_used, cash, equity FROM equity "
                        "WHERE run_id = ? ORDER BY id", (result.run_id,))
    last = equity.groupby("symbol").last()
    assert last.position[SPOT] == 0.5 and last.position[PERP] == -0.5
    assert equity.margin_used.iloc[-1] == pytest.approx(0.5 * last.mark_price[PERP] / 5)  # the coin: none
    entry = dict(zip(fills.symbol, fills.price, strict=True))
    hedged = 0.5 * (last.mark_price[SPOT] - entry[SPOT]) - 0.5 * (last.mark_price[PERP] - entry[PERP])
    change = result.metrics["final_equity"] - 50_000
    assert change == pytest.approx(hedged - fills.fee.sum() - funding.payment.sum(), abs=1e-6)
    assert abs(change) < 0.01 * 50_000 * 0.5  # hedged: far less than the coin's own moves


def test_a_planted_future_spot_trade_changes_no_earlier_decision(tmp_path, data):
    """The spot stream gets one far-off trade late in the day, closing its bar: no decision
    before it changes in either market, and the run with it decides differently after it."""
    minute_end = pd.Timestamp(f"{DAY} 20:01", tz="UTC").timestamp()
    frame = pd.read_csv(data[PERP])
    last = frame.timestamp[frame.timestamp < minute_end].max()
    planted_s = round((last + minute_end) / 2, 3)
    planted = spot_copy(data[PERP], tmp_path / f"BTCUSDT_{DAY}.csv",
                        planted=(planted_s, float(frame.price.iloc[-1]) * 1.5))
    runs = {}
    for label, spot in (("plain", data[SPOT]), ("planted", planted)):
        portfolio.DECISIONS.clear()
        cfg = config(tmp_path, [data[PERP], spot], "strategy.name=tests.run.test_portfolio_backtest:CrossSpy",
                     "account.cash=1000000", name=f"{label}.db")
        assert run_backtest(cfg, progress=False).status == "finished"
        runs[label] = list(portfolio.DECISIONS)
    cut = int(planted_s * 1e9)
    before = {k: [d for d in v if d[0] < cut] for k, v in runs.items()}
    assert len(before["plain"]) >= 20 and {d[1] for d in before["plain"]} == {SPOT, PERP}
    assert before["plain"] == before["planted"]
    assert runs["plain"] != runs["planted"], "the planted trade should change a later decision"
