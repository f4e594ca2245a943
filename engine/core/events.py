"""The events that travel on the bus: immutable, cheap to create, stamped in UTC nanoseconds.

Every event carries ``ts_event`` (when it happened at the venue; for a bar, its close) and
``ts_init`` (when the engine received or made it). Events are ``NamedTuple`` classes: they
cannot be changed after creation and cost a fraction of a microsecond to build, which
matters on a bus that moves hundreds of thousands of bars per second.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

BUY = 1
SELL = -1


class Trades(NamedTuple):
    """A batch of trades for one symbol, as columns sorted by ``ts_event``.

    ``side`` is +1 for a buyer-initiated (taker buy) trade and -1 for a seller-initiated one.
    ``ts_init`` is when the engine received the batch (replay: the last trade's time).
    """

    symbol: str
    ts_event: np.ndarray  # int64 ns
    price: np.ndarray  # float64
    size: np.ndarray  # float64, base units (contracts for inverse)
    side: np.ndarray  # int8, +1 / -1
    trade_id: np.ndarray | None  # bytes (S36), None where the source has no ids
    ts_init: int


class Bar(NamedTuple):
    """A finished bar covering ``[open_time, close_time)``; ``ts_event`` is its close."""

    symbol: str
    interval: str
    open_time: int
    close_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    turnover: float
    trades: int
    ts_event: int
    ts_init: int


class BarSet(NamedTuple):
    """Every symbol's bar of one interval and close time, after each went through ``on_bar``
    (a portfolio's cross-section; ``bars`` maps symbol -> :class:`Bar`)."""

    interval: str
    close_time: int
    bars: dict[str, Bar]
    ts_event: int
    ts_init: int


class OrderRequest(NamedTuple):
    """A strategy asks the broker to place an order.

    ``side`` is +1 buy / -1 sell; ``qty`` is positive base quantity. ``price`` is the limit
    price (limit orders), ``trigger_price`` the stop trigger (stop orders).
    """

    client_order_id: str
    symbol: str
    side: int
    qty: float
    order_type: str  # "market" | "limit" | "stop"
    price: float | None
    trigger_price: float | None
    time_in_force: str  # "GTC" | "IOC" | "FOK" | "PostOnly"
    reduce_only: bool
    strategy_id: str
    ts_event: int
    ts_init: int


class CancelRequest(NamedTuple):
    """A strategy asks the broker to cancel a resting order."""

    client_order_id: str
    symbol: str
    strategy_id: str
    ts_event: int
    ts_init: int


class OrderUpdate(NamedTuple):
    """The broker's word on an order: accepted, rejected, canceled, expired, triggered, filled.

    ``filled`` and ``triggered`` extend DESIGN.md's list so a strategy knows an order's life
    ended by execution or that its stop fired; ``reason`` explains rejections and expiries.
    """

    client_order_id: str
    symbol: str
    status: str
    reason: str
    strategy_id: str
    ts_event: int
    ts_init: int


class Fill(NamedTuple):
    """An execution of (part of) an order at a price, with its fee and liquidity side."""

    client_order_id: str
    symbol: str
    side: int
    price: float
    qty: float
    fee: float
    liquidity: str  # "maker" | "taker"
    strategy_id: str
    ts_event: int
    ts_init: int


class PositionUpdate(NamedTuple):
    """A position after a fill or funding: signed quantity, average entry, realized PnL."""

    symbol: str
    qty: float
    avg_price: float
    realized_pnl: float
    ts_event: int
    ts_init: int


class AccountUpdate(NamedTuple):
    """The account after a change: cash and equity marked to the last price."""

    cash: float
    equity: float
    margin_used: float
    ts_event: int
    ts_init: int


class Funding(NamedTuple):
    """A funding settlement: a positive ``rate`` debits longs and credits shorts."""

    symbol: str
    rate: float
    mark_price: float
    ts_event: int
    ts_init: int


# The detail of the gap a resumed run opens at its start: the downtime since the run it
# continues stopped (``f"{DOWNTIME} {run_id}"``); recorded whether or not it is backfilled.
DOWNTIME = "downtime since run"
# The detail of a ``backfilled`` status closing a silence in which REST found no trade the
# socket had not delivered: a quiet market, not a stall (nothing to record).
NOTHING_MISSED = "nothing missed"


class FeedStatus(NamedTuple):
    """Feed health: ``connected``, ``disconnected``, ``silent`` (no data on a live connection
    for a while: bars are held until REST says whether trades were missed), ``gap``,
    ``backfilled`` or ``unfilled``.

    For ``gap``/``backfilled``/``unfilled``, ``gap_from``/``gap_to`` bound the missing
    interval in ns; otherwise both are 0.
    """

    symbol: str
    status: str
    gap_from: int
    gap_to: int
    detail: str
    ts_event: int
    ts_init: int


class CatchUp(NamedTuple):
    """A closing feed gap hands on the trades it held in time order, bar by bar: every held
    trade of ``symbol`` stamped before ``ts_event`` has been delivered, so a held bar that
    ends by then may close (marked at its own close, before any later trade is seen)."""

    symbol: str
    ts_event: int
    ts_init: int


class Prediction(NamedTuple):
    """A model's output for a bar: ``ts_event`` is the bar close, ``ts_init`` when inference ended."""

    strategy_id: str
    symbol: str
    values: tuple[float, ...]
    ts_event: int
    ts_init: int


class Plot(NamedTuple):
    """A point of a strategy's named series (``Strategy.plot``) for one symbol, stamped with
    the clock when the strategy made it (``ts_event == ts_init``: the bar close it handled)."""

    strategy_id: str
    symbol: str
    name: str
    value: float
    ts_event: int
    ts_init: int


class History(NamedTuple):
    """Bars from before the clock that a strategy asked for (a live warm-up), loaded off the
    event loop: ``bars`` (kline format) or the ``error`` that stopped them; ``ts_event`` is
    when they were asked for, ``ts_init`` when they arrived."""

    strategy_id: str
    symbol: str
    tag: str
    bars: Any
    error: str | None
    ts_event: int
    ts_init: int


class Wakeup(NamedTuple):
    """Carries no data: lets the live pump reach a timer's deadline in a quiet market."""

    ts_event: int
    ts_init: int
