"""Portfolio backtests through the real replay path: several symbols, one pump, one account.

Independence (a portfolio of independent strategies equals its one-symbol runs fill for
fill), event order across symbols (trades interleave by time; ``on_bars`` follows every
``on_bar`` of its close time), and no look-ahead across symbols (a planted future trade of
one symbol changes no earlier decision of any).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pytest

from engine.core.config import load_config
from engine.run.backtest import run_backtest
from strategies.base import Strategy, StrategyConfig
from tests.helpers.archive import DERIVATIVES_HEADER
from tests.helpers.broker import instruments_with_sol, kline_frame, read_table, write_trade_archive

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
PRICES = {"BTCUSDT": 30_000.0, "ETHUSDT": 2_000.0, "SOLUSDT": 150.0}
DAY = "2025-06-01"
T0_S = int(pd.Timestamp(DAY, tz="UTC").timestamp())


def config(tmp_path, data, *settings, symbols=(), name="l.db"):
    rules = instruments_with_sol(tmp_path)
    cfg = load_config(None, [f"ledger.path={tmp_path / name}", f"broker.instruments={rules}", *settings])
    return replace(cfg, run=replace(cfg.run, data=tuple(str(p) for p in data), symbols=tuple(symbols)))


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """One day of trades for each of three symbols, each in its own archive."""
    root = tmp_path_factory.mktemp("portfolio")
    return {s: write_trade_archive(root, DAY, 12_000, seed=7 + k, symbol=s, price=PRICES[s], vol=0.0008)
            for k, s in enumerate(SYMBOLS)}


def fills_of(db, run_id: int) -> pd.DataFrame:
    return read_table(db, "SELECT symbol, ts_event, side, price, qty, fee, liquidity, realized_pnl, "
                      "position, avg_price FROM fills WHERE run_id = ? ORDER BY id",
                      (run_id,))


def test_independent_symbols_trade_as_their_own_runs(tmp_path, archives):
    """sma_cross on three symbols with ample cash = three one-symbol runs, fill for fill,
    and the portfolio's equity change is the sum of theirs."""
    settings = ["strategy.params.fast=5", "strategy.params.slow=20", "strategy.params.notional=2000",
                "account.cash=100000000", "broker.latency_ms=150"]
    whole = run_backtest(config(tmp_path, archives.values(), *settings, symbols=SYMBOLS), progress=False)
    assert whole.status == "finished" and whole.extra["symbols"] == list(SYMBOLS)
    portfolio = fills_of(tmp_path / "l.db", whole.run_id)
    change = 0.0
    for symbol in SYMBOLS:
        alone = run_backtest(config(tmp_path, [archives[symbol]], *settings, f"run.symbol={symbol}",
                                    name=f"{symbol}.db"), progress=False)
        own = fills_of(tmp_path / f"{symbol}.db", alone.run_id).reset_index(drop=True)
        mine = portfolio[portfolio.symbol == symbol].reset_index(drop=True)
        assert len(own) >= 6, f"{symbol}: too few fills ({len(own)}) to show anything"
        pd.testing.assert_frame_equal(mine, own)
        change += alone.metrics["final_equity"] - 100_000_000
        by = whole.extra["by_symbol"][symbol]
        assert by["fills"] == len(own) and by["trades"] == alone.metrics["n_trades"]
        assert by["pnl"] == pytest.approx(alone.metrics["final_equity"] - 100_000_000, abs=1e-6)
    assert whole.metrics["final_equity"] - 100_000_000 == pytest.approx(change, abs=1e-6)
    assert sum(v["pnl"] for v in whole.extra["by_symbol"].values()) == pytest.approx(change, abs=1e-6)


def test_portfolio_equity_is_one_snapshot_per_close_time(tmp_path, archives):
    """Every symbol's bar row of one close time carries the same portfolio equity, and the
    run has one bar row per symbol and close time."""
    result = run_backtest(config(tmp_path, archives.values(), "strategy.params.notional=2000",
                                 symbols=SYMBOLS), progress=False)
    rows = read_table(tmp_path / "l.db", "SELECT ts, symbol, equity, cash FROM equity WHERE run_id = ?",
                      (result.run_id,))
    per_time = rows.groupby("ts").agg(n=("symbol", "nunique"), equities=("equity", "nunique"),
                                      cash=("cash", "nunique"))
    assert (per_time.n == 3).all() and (per_time.equities == 1).all() and (per_time.cash == 1).all()
    assert result.metrics["bars"] == len(per_time)


# -- event order across symbols -------------------------------------------------------------

EVENTS: list[tuple] = []


class OrderSpy(Strategy):
    """Records every trade batch, bar and bar set it is handed, with the clock."""

    config_class = StrategyConfig

    def on_trades(self, trades) -> None:
        EVENTS.append(("trades", trades.symbol, trades.ts_event.tolist(), self.clock.timestamp_ns()))

    def on_bar(self, bar) -> None:
        EVENTS.append(("bar", bar.symbol, bar.close_time, self.clock.timestamp_ns()))

    def on_bars(self, bars) -> None:
        EVENTS.append(("bars", {s: b.close_time for s, b in bars.items()}, self.clock.timestamp_ns()))


def write_trades(path, symbol: str, seconds: list[float], price: float):
    lines = [DERIVATIVES_HEADER]
    for k, s in enumerate(seconds):
        lines.append(f"{T0_S + s:.4f},{symbol},{'Buy' if k % 2 else 'Sell'},0.01,{price + k % 7},"
                     f"ZeroPlusTick,id-{symbol}-{k},0,0.01,{(price + k % 7) * 0.01:.4f},0")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_trades_of_two_symbols_reach_the_strategy_in_time_order(tmp_path):
    """A trade of B stamped between two trades of A reaches the strategy between them; every
    symbol's bar of a close time reaches on_bar before the set reaches on_bars."""
    a_times = [1.0 + 7.0 * k for k in range(60)]
    b_times = [4.5 + 11.0 * k for k in range(38)] + [a_times[10]]  # one tie with A
    a = write_trades(tmp_path / f"BTCUSDT{DAY}.csv", "BTCUSDT", a_times, 30_000.0)
    b = write_trades(tmp_path / f"ETHUSDT{DAY}.csv", "ETHUSDT", sorted(b_times), 2_000.0)
    EVENTS.clear()
    cfg = config(tmp_path, [a, b], "strategy.name=tests.run.test_portfolio_backtest:OrderSpy",
                 symbols=("BTCUSDT", "ETHUSDT"))
    assert run_backtest(cfg, progress=False).status == "finished"
    seen = [(ts, sym) for kind, sym, stamps, _ in (e for e in EVENTS if e[0] == "trades") for ts in stamps]
    def ns(s: float) -> int:
        return (T0_S * 10_000 + round(s * 10_000)) * 100_000

    expected = sorted([(ns(s), "BTCUSDT") for s in a_times] + [(ns(s), "ETHUSDT") for s in b_times])
    assert [ts for ts, _ in seen] == [ts for ts, _ in expected]
    assert sorted(seen) == expected
    bars_done: dict[int, set[str]] = {}
    sets = 0
    for event in EVENTS:
        if event[0] == "bar":
            _, symbol, close, clock = event
            assert close not in {c for c, done in bars_done.items() if done == {"set"}}, "bar after its set"
            bars_done.setdefault(close, set()).add(symbol)
            assert clock >= close
        elif event[0] == "bars":
            _, closes, clock = event
            (close,) = set(closes.values())
            assert bars_done[close] == set(closes) == {"BTCUSDT", "ETHUSDT"}
            bars_done[close] = {"set"}
            sets += 1
            assert clock >= close
        else:
            _, _, stamps, clock = event
            assert max(stamps) <= clock
    assert sets == len(bars_done) >= 7


# -- no look-ahead across symbols -----------------------------------------------------------


@dataclass(frozen=True)
class CrossConfig(StrategyConfig):
    notional: float = 1000.0


DECISIONS: list[tuple] = []


class CrossSpy(Strategy):
    """Goes long whichever symbol rose most over the last bar set; records every order it
    sends and checks that nothing it is handed is stamped after the clock."""

    config_class = CrossConfig

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.last: dict[str, float] = {}

    def on_bars(self, bars) -> None:
        now = self.clock.timestamp_ns()
        assert all(b.close_time <= now and b.ts_event <= now for b in bars.values())
        moves = {s: b.close / self.last[s] for s, b in bars.items() if s in self.last}
        self.last.update({s: b.close for s, b in bars.items()})
        if len(moves) == len(self.symbols):
            best = max(sorted(moves), key=moves.get)
            for symbol in self.symbols:
                qty = round(self.config.notional / bars[symbol].close, 2) if symbol == best else 0.0
                if self.target_position(qty, symbol=symbol) is not None:
                    DECISIONS.append((now, symbol, qty))


def test_a_planted_future_trade_of_one_symbol_changes_no_earlier_decision(tmp_path, archives):
    """ETHUSDT gets one far-off trade late in the day, closing its bar: no decision before it
    changes, for any symbol, and the run with it decides differently after it."""
    text = archives["ETHUSDT"].read_text().splitlines()
    minute_end = T0_S + 20 * 3600 + 60
    last = max(float(line.split(",")[0]) for line in text[1:] if float(line.split(",")[0]) < minute_end)
    planted_s = round((last + minute_end) / 2, 4)  # the last trade of its bar: the bar closes on it
    rows = [line for line in text[1:] if float(line.split(",")[0]) < planted_s]
    later = [line for line in text[1:] if float(line.split(",")[0]) >= planted_s]
    fields = rows[-1].split(",")
    fields[0], fields[4], fields[6] = f"{planted_s:.4f}", f"{float(fields[4]) * 1.5:.2f}", "planted"
    planted = tmp_path / "planted"
    planted.mkdir()
    path = planted / archives["ETHUSDT"].name
    path.write_text("\n".join([text[0], *rows, ",".join(fields), *later]) + "\n")
    name = "strategy.name=tests.run.test_portfolio_backtest:CrossSpy"
    runs = {}
    for label, eth in (("plain", archives["ETHUSDT"]), ("planted", path)):
        DECISIONS.clear()
        data = [archives["BTCUSDT"], eth, archives["SOLUSDT"]]
        assert run_backtest(config(tmp_path, data, name, "account.cash=1000000", symbols=SYMBOLS,
                                   name=f"{label}.db"), progress=False).status == "finished"
        runs[label] = list(DECISIONS)
    cut = int(planted_s * 1e9)
    before = {k: [d for d in v if d[0] < cut] for k, v in runs.items()}
    assert len(before["plain"]) >= 20
    assert before["plain"] == before["planted"]
    assert runs["plain"] != runs["planted"], "the planted trade should change a later decision"


# -- kline files and errors -----------------------------------------------------------------


def test_kline_files_named_by_symbol(tmp_path):
    """``SYMBOL=PATH`` kline files of three symbols replay as one portfolio run."""
    paths = []
    for k, symbol in enumerate(SYMBOLS):
        path = tmp_path / f"{symbol.lower()}.csv"
        kline_frame(300, seed=k, price=PRICES[symbol]).to_csv(path, index=False, float_format="%.10g")
        paths.append(f"{symbol}={path}")
    result = run_backtest(config(tmp_path, paths, "strategy.params.notional=500", symbols=SYMBOLS),
                          progress=False)
    assert result.status == "finished" and result.metrics["bars"] == 300
    assert set(result.extra["by_symbol"]) == set(SYMBOLS)
    assert all(v["fills"] > 0 for v in result.extra["by_symbol"].values())


def test_planted_leader_is_held_by_rotation(tmp_path):
    """Three symbols' klines, one with a steady upward drift: rotation (top 1) holds it."""
    paths = []
    for k, symbol in enumerate(SYMBOLS):
        frame = kline_frame(400, seed=20 + k, price=PRICES[symbol], vol=0.002)
        if symbol == "SOLUSDT":
            drift = np.exp(0.004 * np.arange(len(frame)))
            for column in ("open", "high", "low", "close"):
                frame[column] = np.round(frame[column] * drift, 1)
        path = tmp_path / f"{symbol}-1m-2025-06-01-2025-06-02.csv"  # the name fetch gives
        frame.to_csv(path, index=False, float_format="%.10g")
        paths.append(path)
    cfg = config(tmp_path, paths, "strategy.name=strategies.rotation:Rotation", "strategy.params.lookback=30",
                 "strategy.params.rebalance=10", "strategy.params.notional=1000", symbols=SYMBOLS)
    result = run_backtest(cfg, progress=False)
    fills = read_table(tmp_path / "l.db", "SELECT symbol, qty, position FROM fills WHERE run_id = ?",
                       (result.run_id,))
    assert set(fills.symbol) == {"SOLUSDT"}, fills.groupby("symbol").size().to_dict()
    assert fills.position.iloc[-1] > 0


@pytest.mark.parametrize("setting, said", [("lookback=500", "lookback=500 needs 501 bars"),
                                            ("rebalance=500", "rebalance=500 but the run had 300")])
def test_rotation_says_why_it_never_traded(tmp_path, caplog, setting, said):
    """A lookback or rebalance longer than the data trades nothing: the run says so."""
    paths = []
    for k, symbol in enumerate(SYMBOLS[:2]):
        path = tmp_path / f"{symbol}-1m-2025-06-01-2025-06-02.csv"
        kline_frame(300, seed=k, price=PRICES[symbol]).to_csv(path, index=False, float_format="%.10g")
        paths.append(path)
    cfg = config(tmp_path, paths, "strategy.name=rotation", f"strategy.params.{setting}", symbols=SYMBOLS[:2])
    with caplog.at_level("WARNING", logger="strategy.Rotation"):
        result = run_backtest(cfg, progress=False)
    assert result.fills == 0 and result.status == "finished"
    assert [r.getMessage() for r in caplog.records if said in r.getMessage()], caplog.text


def test_a_planted_future_kline_of_one_symbol_changes_no_earlier_decision(tmp_path, monkeypatch):
    """Kline files through the cache and the windowed merge (windows of a few bars, so many
    cuts): ETH's bars from bar 200 on are replaced by a jump; no order of any symbol stamped
    before bar 200 closes changes, and some order after it does."""
    from engine.feeds.history.replay import KlineReplay

    monkeypatch.setattr(KlineReplay, "block_rows", 7)
    orders = {}
    for label in ("plain", "planted"):
        folder = tmp_path / label
        folder.mkdir()
        paths = []
        for k, symbol in enumerate(SYMBOLS):
            frame = kline_frame(300, seed=40 + k, price=PRICES[symbol], vol=0.002)
            if label == "planted" and symbol == "ETHUSDT":
                for column in ("open", "high", "low", "close"):
                    frame.loc[200:, column] = np.round(frame.loc[200:, column] * 1.5, 2)
            path = folder / f"{symbol}.csv"
            frame.to_csv(path, index=False, float_format="%.10g")
            paths.append(f"{symbol}={path}")
        result = run_backtest(config(folder, paths, "strategy.params.notional=500", symbols=SYMBOLS),
                              progress=False)
        orders[label] = read_table(folder / "l.db", "SELECT symbol, side, qty, ts_event FROM orders "
                                   "WHERE run_id = ? ORDER BY id", (result.run_id,))
        close_200 = (int(frame["open_time"].iloc[200]) + 60_000) * 1_000_000
    before = {k: v[v["ts_event"] < close_200].reset_index(drop=True) for k, v in orders.items()}
    assert len(before["plain"]) > 0
    pd.testing.assert_frame_equal(before["plain"], before["planted"])
    assert not orders["plain"].equals(orders["planted"])  # the planted jump does move later orders
