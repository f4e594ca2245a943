"""Turns bus events into ledger rows: orders, updates, fills, funding, bars, one equity
snapshot per bar, the feed's gaps and the strategies' plot points. It subscribes last, so a
bar's snapshot is taken after the broker and the strategies have handled that bar."""

from __future__ import annotations

import json

from engine.broker import SimulatedBroker
from engine.core.bus import Bus
from engine.core.events import (
    DOWNTIME,
    NOTHING_MISSED,
    AccountUpdate,
    Bar,
    FeedStatus,
    Fill,
    Funding,
    OrderRequest,
    OrderUpdate,
    Plot,
    PositionUpdate,
    Prediction,
)
from engine.ledger.store import Ledger
from engine.strategy.host import is_late


class LedgerRecorder:
    """Records one run's events; ``interval`` and ``symbol`` (comma-joined for a portfolio)
    pick the bars that get equity snapshots. Each symbol's bar is a row with that symbol's
    position and mark; every row of one close time holds the portfolio's one snapshot (cash,
    equity, margin after the last of that time's bars was handled), so a portfolio's rows of
    a close time are written together, once its last symbol's bar is in (or the next close
    time begins, when a symbol had no bar)."""

    def __init__(self, bus: Bus, ledger: Ledger, run_id: int, broker: SimulatedBroker,
                 symbol: str, interval: str) -> None:
        self.ledger, self.run_id, self.broker = ledger, run_id, broker
        self.symbol, self.interval = symbol, interval
        self._symbols = frozenset(symbol.split(","))
        self._pending: list[list] = []  # a portfolio's rows of the close time in progress
        self.bars = 0
        self.last_close = -1
        self._fill: Fill | None = None
        self._position: PositionUpdate | None = None
        self._connected = False
        self._waiting: FeedStatus | None = None  # the wait for the first connection, until it ends
        self._silent: FeedStatus | None = None  # a silence on a live connection, until it ends
        bus.subscribe(OrderRequest, self._on_order)
        bus.subscribe(OrderUpdate, self._on_update)
        bus.subscribe(Fill, self._on_fill)
        bus.subscribe(PositionUpdate, self._on_position)
        bus.subscribe(AccountUpdate, self._on_account)
        bus.subscribe(Funding, self._on_funding)
        bus.subscribe(Bar, self._on_bar)
        bus.subscribe(Prediction, self._on_prediction)
        bus.subscribe(FeedStatus, self._on_feed_status)
        bus.subscribe(Plot, self._on_plot)

    def _on_order(self, o: OrderRequest) -> None:
        self.ledger.add("orders", (
            self.run_id, o.client_order_id, o.strategy_id, o.symbol, o.side, o.qty, o.order_type,
            o.price, o.trigger_price, o.time_in_force, int(o.reduce_only), o.ts_event, o.ts_init,
        ))

    def _on_update(self, u: OrderUpdate) -> None:
        self.ledger.add("order_updates", (
            self.run_id, u.client_order_id, u.status, u.reason, u.ts_event, u.ts_init,
        ))

    # The broker publishes Fill, PositionUpdate, AccountUpdate back to back for each fill;
    # the three become one row.
    def _on_fill(self, fill: Fill) -> None:
        self._fill = fill
        if fill.strategy_id == "broker":  # a liquidation: record the broker's own order too,
            self.ledger.add("orders", (  # so that every fill has its order in the ledger
                self.run_id, fill.client_order_id, fill.strategy_id, fill.symbol, fill.side,
                fill.qty, "market", None, None, "IOC", 1, fill.ts_event, fill.ts_init,
            ))

    def _on_position(self, pos: PositionUpdate) -> None:
        self._position = pos

    def _on_account(self, acct: AccountUpdate) -> None:
        f, p = self._fill, self._position
        if f is None or p is None:
            return
        self.ledger.add("fills", (
            self.run_id, f.client_order_id, f.strategy_id, f.symbol, f.side, f.price, f.qty,
            f.fee, f.liquidity, p.realized_pnl, p.qty, p.avg_price, acct.cash, acct.equity,
            f.ts_event, f.ts_init,
        ))
        self._fill = self._position = None

    def _on_funding(self, funding: Funding) -> None:
        position = self.broker.position_qty(funding.symbol)
        linear = not self.broker.account.is_spot(funding.symbol)  # only linear positions pay funding
        payment = position * funding.mark_price * funding.rate if linear else 0.0
        self.ledger.add("funding", (
            self.run_id, funding.symbol, funding.rate, funding.mark_price, position, payment,
            funding.ts_event,
        ))

    def _on_bar(self, bar: Bar) -> None:
        # one unpack instead of a dozen attribute reads: this runs for every bar
        symbol, interval, open_time, close_time, o, h, lo, c, volume, turnover, trades, _, _ = bar
        if interval != self.interval or symbol not in self._symbols:
            return
        self.bars += 1
        if close_time != self.last_close:
            self.flush_bars()
        self.last_close = close_time
        account = self.broker.account
        pos = account.positions.get(symbol)
        qty, mark = 0.0 if pos is None else pos.qty, account.marks.get(symbol, c)
        if len(self._symbols) == 1:
            equity, margin = account.equity_and_margin()
            self.ledger.add("equity", (self.run_id, close_time, account.cash, equity, qty, mark, margin,
                                       symbol, interval, open_time, o, h, lo, c, volume, turnover, trades))
            return
        self._pending.append([self.run_id, close_time, 0.0, 0.0, qty, mark, 0.0, symbol, interval,
                              open_time, o, h, lo, c, volume, turnover, trades])
        if len(self._pending) == len(self._symbols):
            account.forget()  # the account as it is now is the close time's snapshot
            self.flush_bars()
        else:  # the snapshot if no other bar of this close time comes
            account.remember()

    def flush_bars(self) -> None:
        """Write the pending rows of a portfolio's close time, each with the account as it was
        at the last of them (remembered then, so nothing later leaks into the snapshot)."""
        if not self._pending:
            return
        account = self.broker.account
        cash, equity, margin = account.remembered_totals()
        account.forget()
        rows, self._pending = self._pending, []
        for row in rows:
            row[2], row[3], row[6] = cash, equity, margin
        self.ledger.add_many("equity", rows)

    def _on_prediction(self, p: Prediction) -> None:
        self.ledger.add("predictions", (
            self.run_id, p.strategy_id, p.ts_event, p.ts_init, p.ts_init - p.ts_event,
            int(is_late(p, self.last_close)), json.dumps(list(p.values)), p.symbol,
        ))

    def _on_plot(self, p: Plot) -> None:
        self.ledger.add("plots", (self.run_id, p.symbol, p.name, p.ts_event, p.value))

    def _on_feed_status(self, s: FeedStatus) -> None:
        """Gaps, refused subscriptions and drops as rows. The wait for the first connection is
        a gap only when its backfill fails (or the connection never comes): trades were
        missed then; otherwise nothing was, and a clean run records no gap. A resumed run's
        downtime is recorded either way: its bars came from REST, not from the stream."""
        if s.status == "silent":
            self._silent = s  # a row only if it was a stall, not a quiet market
            return
        silent, self._silent = self._silent, None
        if silent is not None and not (s.status == "backfilled" and s.detail == NOTHING_MISSED):
            self._gap_row(silent)
        if s.status == "connected":
            self._connected = True
        elif s.detail == NOTHING_MISSED:
            return
        elif s.status == "subscribe_failed":
            self._gap_row(s)
        elif s.status == "disconnected" and not self._connected:
            if self._waiting is None or not self._waiting.detail.startswith(DOWNTIME):
                self._waiting = s  # the latest attempt says best why the connection has not come
        elif s.status in ("disconnected", "backfilled", "unfilled"):
            waiting, self._waiting = self._waiting, None
            downtime = waiting is not None and waiting.detail.startswith(DOWNTIME)
            if waiting is not None and (s.status == "unfilled" or downtime):
                self._gap_row(waiting)
            if waiting is None or s.status != "backfilled" or downtime:
                self._gap_row(s)

    def _gap_row(self, s: FeedStatus) -> None:
        self.ledger.add("feed_gaps", (
            self.run_id, s.symbol, s.status, s.gap_from, s.gap_to, s.detail, s.ts_init,
        ))

    def save_state(self, strategy_id: str, ts: int, state: dict) -> None:
        self.ledger.add("strategy_state", (self.run_id, strategy_id, ts, json.dumps(state)))
