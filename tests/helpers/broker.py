"""Builders shared by the broker, ledger, metrics and end-to-end tests.

Everything here drives the real components: a real :class:`~engine.core.bus.Bus` on a
:class:`~engine.core.clock.ReplayClock`, the bundled instrument rules, the real cost models and
:class:`~engine.broker.SimulatedBroker`, and real SQLite ledgers. Nothing is mocked.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.broker.from_config import broker_from_config
from engine.core.bus import Bus
from engine.core.clock import NS_PER_MS, NS_PER_S, ReplayClock
from engine.core.config import AccountSection, BrokerSection, Config, load_config
from engine.core.events import (
    AccountUpdate,
    Bar,
    CancelRequest,
    Fill,
    Funding,
    OrderRequest,
    OrderUpdate,
    PositionUpdate,
    Trades,
)
from engine.ledger.recorder import LedgerRecorder
from engine.ledger.store import Ledger
from strategies.base import Strategy, StrategyConfig

BTC = "BTCUSDT"
MINUTE = 60 * NS_PER_S
# 2025-06-01 00:00:00 UTC, the start of the bundled sample.
T0 = 1_748_736_000 * NS_PER_S

DERIVATIVES_HEADER = (
    "timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,"
    "foreignNotional,RPI"
)


class Harness:
    """A broker on a real bus with every event it publishes collected, in order."""

    def __init__(
        self,
        category: str = "linear",
        cash: float = 10_000.0,
        *,
        leverage: float = 1.0,
        maintenance_margin: float = 0.005,
        maker: float = 0.0002,
        taker: float = 0.00055,
        slippage_bps: float = 0.0,
        impact: float = 0.0,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        cancel_ms: float | None = None,
        touch_probability: float = 1.0,
        max_participation: float = 1.0,
        match_on: str = "trades",
        fill_at: str = "next",
        funding_rate: float = 0.0,
        seed: int = 0,
        start_ns: int = T0,
        strategy_id: str = "test",
    ) -> None:
        self.clock = ReplayClock(start_ns)
        self.bus = Bus(self.clock)
        self.broker = broker_from_config(
            self.bus,
            BrokerSection(maker_fee=maker, taker_fee=taker, slippage_bps=slippage_bps, impact=impact,
                          latency_ms=latency_ms, latency_jitter_ms=jitter_ms, cancel_latency_ms=cancel_ms,
                          touch_fill_probability=touch_probability, max_participation=max_participation,
                          maintenance_margin=maintenance_margin, fill_at=fill_at, funding_rate=funding_rate),
            AccountSection(cash=cash, leverage=leverage), category=category, match_on=match_on, seed=seed)
        self.account = self.broker.account
        self.instruments = self.broker.instruments
        self.strategy_id = strategy_id
        self.events: list[Any] = []
        self.fills: list[Fill] = []
        self.updates: list[OrderUpdate] = []
        self.sent: dict[str, OrderRequest] = {}
        for kind in (Fill, OrderUpdate, PositionUpdate, AccountUpdate, Funding):
            self.bus.subscribe(kind, self.events.append)
        self.bus.subscribe(Fill, self.fills.append)
        self.bus.subscribe(OrderUpdate, self.updates.append)
        self._seq = 0

    # -- sending things --------------------------------------------------------------------

    def trades(self, ts: Sequence[int], price: Sequence[float], size: Sequence[float] | float = 1.0,
               side: Sequence[int] | int = 1, symbol: str = BTC) -> None:
        """Deliver one batch of trades (``ts_init`` = its last trade's time)."""
        ts_arr = np.asarray(ts, dtype=np.int64)
        n = len(ts_arr)
        price_arr = np.asarray(price, dtype=np.float64)
        size_arr = np.broadcast_to(np.asarray(size, dtype=np.float64), (n,)).copy()
        side_arr = np.broadcast_to(np.asarray(side, dtype=np.int8), (n,)).copy()
        self.bus.process(Trades(symbol, ts_arr, price_arr, size_arr, side_arr, None, int(ts_arr[-1])))

    def trade(self, ts: int, price: float, size: float = 1.0, side: int = 1) -> None:
        self.trades([ts], [price], [size], [side])

    def bar(self, open_time: int, o: float, h: float, lo: float, c: float, volume: float = 10.0,
            interval_ns: int = MINUTE, symbol: str = BTC, label: str = "1m") -> Bar:
        """Deliver one finished bar at its close, as the kline replay does."""
        close = open_time + interval_ns
        bar = Bar(symbol, label, open_time, close, o, h, lo, c, volume, volume * c, 1, close, close)
        self.bus.process(bar)
        return bar

    def order(self, side: int, qty: float, order_type: str = "market", *, price: float | None = None,
              trigger: float | None = None, tif: str = "GTC", reduce_only: bool = False,
              cid: str | None = None, ts: int | None = None, symbol: str = BTC) -> str:
        """Send an OrderRequest through the bus at ``ts`` (default: now); returns its id."""
        if cid is None:
            self._seq += 1
            cid = f"o{self._seq}"
        now = self.clock.timestamp_ns() if ts is None else ts
        req = OrderRequest(cid, symbol, side, qty, order_type, price, trigger, tif, reduce_only,
                           self.strategy_id, now, now)
        self.sent.setdefault(cid, req)
        self.bus.process(req)
        return cid

    def cancel(self, cid: str, ts: int | None = None, symbol: str = BTC) -> None:
        now = self.clock.timestamp_ns() if ts is None else ts
        self.bus.process(CancelRequest(cid, symbol, self.strategy_id, now, now))

    # -- reading what happened -------------------------------------------------------------

    def statuses(self, cid: str) -> list[str]:
        return [u.status for u in self.updates if u.client_order_id == cid]

    def reasons(self, cid: str) -> list[str]:
        return [u.reason for u in self.updates if u.client_order_id == cid and u.reason]

    def fills_of(self, cid: str) -> list[Fill]:
        return [f for f in self.fills if f.client_order_id == cid]

    def filled_qty(self, cid: str) -> float:
        return sum(f.qty for f in self.fills_of(cid))

    @property
    def position(self) -> float:
        return self.broker.position_qty(BTC)


def replay_trades(bus: Bus, symbol: str, ts: np.ndarray, price: np.ndarray, size: np.ndarray,
                  side: np.ndarray, max_batch: int = 50, after: Callable[[], None] | None = None) -> None:
    """Send trades the way :class:`engine.feeds.history.replay.TradeReplay` does: every batch is cut
    at the clock's next timer deadline (trades before it go first, the timer fires, then
    the rest), and batches hold at most ``max_batch`` trades. ``after`` is called once each
    batch and everything it caused has been delivered."""
    clock = bus.clock
    n, lo = len(ts), 0
    while lo < n:
        hi = min(n, lo + max_batch)
        deadline = clock.next_deadline()
        if deadline is not None and deadline <= int(ts[hi - 1]):
            cut = lo + int(np.searchsorted(ts[lo:hi], deadline, side="left"))
            if cut == lo:
                bus.advance_to(deadline)
                if after is not None:
                    after()
                continue
            hi = cut
        bus.process(Trades(symbol, ts[lo:hi], price[lo:hi], size[lo:hi], side[lo:hi], None,
                           int(ts[hi - 1])))
        if after is not None:
            after()
        lo = hi


# -- synthetic data files ---------------------------------------------------------------------


def random_walk(n: int, seed: int, start: float = 30_000.0, vol: float = 0.001,
                tick: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    path = start * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    return np.round(path / tick) * tick


def kline_frame(n: int, seed: int = 1, start_ms: int = T0 // NS_PER_MS, step_ms: int = 60_000,
                price: float = 30_000.0, vol: float = 0.001) -> pd.DataFrame:
    """``n`` bars of a seeded random walk in the kline format (prices on the 0.1 tick)."""
    rng = np.random.default_rng(seed + 1)
    close = random_walk(n, seed, price, vol)
    opens = np.round(np.concatenate(([price], close[:-1])) + rng.integers(-3, 4, n) * 0.1, 1)
    wiggle = np.round(rng.uniform(0.0, price * vol, n), 1)
    high = np.maximum(opens, close) + wiggle
    low = np.minimum(opens, close) - wiggle[::-1]
    volume = np.round(rng.uniform(1.0, 20.0, n), 3)
    return pd.DataFrame({
        "open_time": start_ms + np.arange(n, dtype=np.int64) * step_ms,
        "open": opens, "high": np.round(high, 1), "low": np.round(low, 1), "close": close,
        "volume": volume, "turnover": np.round(volume * close, 2),
        "trades": rng.integers(1, 500, n),
    })


def write_klines(path: Path, n: int, seed: int = 1, **kw: Any) -> pd.DataFrame:
    """Write a kline CSV (``open_time,open,high,low,close,volume,turnover,trades``)."""
    frame = kline_frame(n, seed, **kw)
    frame.to_csv(path, index=False, float_format="%.10g")
    return frame


def write_trade_archive(directory: Path, day: str, n: int, seed: int, symbol: str = BTC,
                        price: float = 30_000.0, vol: float = 0.0004) -> Path:
    """A synthetic Bybit derivatives archive for one UTC day (``BTCUSDT2025-06-01.csv``),
    ``n`` trades at sorted random times (decimal seconds, 4 places)."""
    rng = np.random.default_rng(seed)
    start_s = int(pd.Timestamp(day, tz="UTC").timestamp())
    ticks = np.sort(rng.integers(0, 86_400 * 10_000, n)) + start_s * 10_000  # 1e-4 s
    prices = random_walk(n, seed + 1, price, vol)
    sizes = np.round(rng.uniform(0.001, 0.5, n), 3)
    sides = np.where(rng.random(n) < 0.5, "Buy", "Sell")
    ids = rng.integers(0, 2**62, (n, 2))
    frame = pd.DataFrame({
        "timestamp": np.char.add(np.char.add((ticks // 10_000).astype(str), "."),
                                 np.char.zfill((ticks % 10_000).astype(str), 4)),
        "symbol": symbol, "side": sides,
        "size": sizes, "price": prices, "tickDirection": "ZeroPlusTick",
        "trdMatchID": [f"{a:016x}-{b:016x}" for a, b in ids.tolist()],
        "grossValue": 0, "homeNotional": sizes, "foreignNotional": np.round(sizes * prices, 4),
        "RPI": 0,
    })
    path = Path(directory) / f"{symbol}{day}.csv"
    frame.to_csv(path, index=False, header=DERIVATIVES_HEADER.split(","), float_format="%.10g")
    return path


# -- configs and ledgers ----------------------------------------------------------------------


def backtest_config(data: Sequence[str | Path], ledger: str | Path, settings: Sequence[str] = (),
                    **params: Any) -> Config:
    """A :class:`Config` from built-in defaults plus ``section.key=value`` settings, replaying
    ``data`` into ``ledger`` with strategy parameters ``params``."""
    overrides = [f"ledger.path={ledger}", *settings]
    overrides += [f"strategy.params.{k}={v}" for k, v in params.items()]
    cfg = load_config(None, overrides)
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, data=tuple(str(p) for p in data)))


RUN_FIELDS = dict(
    kind="backtest", strategy="test", params="{}", symbol=BTC, category="linear", interval="1m",
    data_start=T0, data_end=T0 + 86_400 * NS_PER_S, data_files="[]", seed=0,
    initial_cash=10_000.0, config="{}",
)


def start_run(ledger: Ledger, **fields: Any) -> int:
    """A run row with plausible defaults for every required column."""
    return ledger.start_run(**(RUN_FIELDS | fields))


def attach_ledger(h: Harness, target: str | Path | Ledger, batch_rows: int = 50_000,
                  **fields: Any) -> tuple[Ledger, int, LedgerRecorder]:
    """Record ``h``'s bus as a new run in a real SQLite ledger (subscribes last): a new one
    at the path ``target``, or ``target`` itself when it is an open ledger."""
    ledger = target if isinstance(target, Ledger) else Ledger(target, batch_rows=batch_rows)
    run_id = start_run(ledger, category=h.account.category, initial_cash=h.account.initial_cash,
                       **fields)
    recorder = LedgerRecorder(h.bus, ledger, run_id, h.broker, fields.get("symbol", BTC),
                              fields.get("interval", "1m"))
    return ledger, run_id, recorder


def read_table(path: str | Path, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
    """Raw rows straight from the SQLite file (no engine code in between)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return pd.read_sql_query(sql, conn, params=list(params))
    finally:
        conn.close()


# -- a test strategy that goes long and short, so round trips flip ------------------------------


@dataclasses.dataclass(frozen=True)
class FlipperConfig(StrategyConfig):
    """Every ``every`` bars, target +qty, then -qty, then +qty, ... (``flat_every``: go flat
    instead of flipping on every such step, so trips both flip and close)."""

    every: int = 7
    qty: float = 0.01
    flat_every: int = 3


class Flipper(Strategy):
    config_class = FlipperConfig

    def __init__(self, config: FlipperConfig | None = None) -> None:
        super().__init__(config)
        self._bars = 0
        self._steps = 0

    def on_bar(self, bar) -> None:
        self._bars += 1
        if self._bars % self.config.every:
            return
        self._steps += 1
        if self._steps % self.config.flat_every == 0:
            self.target_position(0.0)
        else:
            self.target_position(self.config.qty * (1 if self._steps % 2 else -1))


@dataclasses.dataclass(frozen=True)
class QuoterConfig(StrategyConfig):
    """Every ``every`` bars: cancel what is open, then quote a limit ``offset_ticks`` from the
    close (buy when flat or short, sell when long); every fourth time flatten at market."""

    qty: float = 0.01
    every: int = 2
    offset_ticks: int = 0
    tick: float = 0.1


class Quoter(Strategy):
    config_class = QuoterConfig

    def __init__(self, config: QuoterConfig | None = None) -> None:
        super().__init__(config)
        self._bars = 0

    def on_bar(self, bar) -> None:
        self._bars += 1
        cfg = self.config
        if self._bars % cfg.every:
            return
        for cid in self.open_orders():
            self.cancel_order(cid)
        if (self._bars // cfg.every) % 4 == 0:
            self.target_position(0.0)
            return
        side = -1 if self.position > 0 else 1
        price = round(round(bar.close / cfg.tick) * cfg.tick - side * cfg.offset_ticks * cfg.tick, 10)
        self.submit_order(side, cfg.qty, "limit", price=price)


SOLUSDT = {"symbol": "SOLUSDT", "category": "linear", "tick_size": 0.01, "qty_step": 0.1, "min_qty": 0.1,
           "max_qty": 79770, "max_market_qty": 5000, "min_notional": 5, "max_leverage": 100,
           "base": "SOL", "quote": "USDT"}


def instruments_with_sol(directory: Path) -> Path:
    """The bundled instruments plus linear SOLUSDT, as a file for ``broker.instruments``."""
    from engine.broker.instruments import BUNDLED

    rows = json.loads(BUNDLED.read_text())["instruments"] + [SOLUSDT]
    path = Path(directory) / "instruments.json"
    path.write_text(json.dumps({"instruments": rows}))
    return path


PORTFOLIO_PRICES = {"BTCUSDT": 30_000.0, "ETHUSDT": 2_000.0, "SOLUSDT": 150.0}


def write_portfolio_files(root: Path, trades: int, bars: int) -> None:
    """Each of ``PORTFOLIO_PRICES``' symbols as a derivatives archive of 2025-06-01 (``trades``
    trades) and a kline file ``<symbol>-bars.csv`` (``bars`` one-minute bars) in ``root``."""
    for k, symbol in enumerate(PORTFOLIO_PRICES):
        write_trade_archive(root, "2025-06-01", trades, seed=3 + k, symbol=symbol,
                            price=PORTFOLIO_PRICES[symbol], vol=0.001)
        kline_frame(bars, seed=k, price=PORTFOLIO_PRICES[symbol]).to_csv(
            root / f"{symbol.lower()}-bars.csv", index=False, float_format="%.10g")
