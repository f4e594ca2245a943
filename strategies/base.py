"""The strategy plugin API: subclass :class:`Strategy`, give it a frozen config, override the
callbacks you need, and act through ``submit_order``, ``cancel_order`` or
``target_position``.

A minimal strategy::

    @dataclass(frozen=True)
    class BuyDipsConfig(StrategyConfig):
        drop: float = 0.01
        qty: float = 0.001

    class BuyDips(Strategy):
        config_class = BuyDipsConfig

        def on_bar(self, bar):
            if bar.close < bar.open * (1 - self.config.drop):
                self.target_position(self.config.qty)

A portfolio strategy (a run of ``--symbols A,B,C``) gets ``on_bar`` for every symbol's bar
(``bar.symbol``), then ``on_bars`` with all of one close time's bars, and names the symbol
it trades::

    class Momentum(Strategy):
        def on_bars(self, bars):
            best = max(bars, key=lambda s: bars[s].close / bars[s].open)
            for symbol in self.symbols:
                self.target_position(0.01 if symbol == best else 0.0, symbol=symbol)

The engine calls the callbacks from one thread, in event order, with ``self.clock`` set to
the event's time; nothing a callback can see is stamped after the clock. Read time from
``self.clock``, never from ``time.time()``, so replay and live behave the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from engine.broker.instruments import Instrument
    from engine.core.clock import Clock
    from engine.core.events import Bar, Fill, History, OrderUpdate, Prediction, Trades
    from engine.strategy.host import StrategyContext


@dataclass(frozen=True)
class StrategyConfig:
    """Base for a strategy's typed, frozen parameters; override ``validate`` to check them
    (raise ValueError with a message naming the parameter)."""

    def validate(self) -> None:
        """Check the parameters together; the default accepts anything."""


class Strategy:
    """Base class of every strategy. ``config_class`` declares the parameters."""

    config_class: ClassVar[type[StrategyConfig]] = StrategyConfig

    def __init__(self, config: StrategyConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        self._ctx: StrategyContext | None = None
        self.log = logging.getLogger(f"strategy.{type(self).__name__}")

    def attach(self, ctx: StrategyContext) -> None:
        """Called by the engine before ``on_start``; gives the strategy its venue and clock."""
        self._ctx = ctx

    # -- what the strategy can see -------------------------------------------------------

    @property
    def clock(self) -> Clock:
        return self._ctx.clock

    @property
    def symbol(self) -> str:
        """The run's symbol; a portfolio run has several (``symbols``), so this is an error there."""
        return self._ctx.only_symbol("symbol")

    @property
    def symbols(self) -> tuple[str, ...]:
        """Every symbol the run trades, in the order given (one for a one-symbol run)."""
        return self._ctx.symbols

    @property
    def interval(self) -> str:
        return self._ctx.interval

    @property
    def timeframes(self) -> tuple[str, ...]:
        """The run's higher timeframes (``--timeframes 5m,1h``), whose bars go to ``on_timeframe_bar``."""
        return self._ctx.timeframes

    @property
    def strategy_id(self) -> str:
        return self._ctx.strategy_id

    @property
    def position(self) -> float:
        """Signed position in base units of the run's only symbol, built from fills only."""
        return self._ctx.position()

    def position_of(self, symbol: str) -> float:
        """Signed position in ``symbol`` (one of ``symbols``), built from fills only."""
        return self._ctx.position(symbol)

    @property
    def positions(self) -> dict[str, float]:
        """Every symbol's signed position, 0.0 when flat."""
        return self._ctx.positions()

    @property
    def cash(self) -> float:
        return self._ctx.cash()

    @property
    def equity(self) -> float:
        """Cash plus positions marked to the last price."""
        return self._ctx.equity()

    @property
    def leverage(self) -> float:
        """The account's leverage (position value per unit of margin; 1 on spot): a position
        worth more than ``equity * leverage`` is refused for margin."""
        return self._ctx.broker.account.leverage

    @property
    def mode(self) -> str:
        """``replay`` in a backtest, ``live`` when paper trading on the live feed."""
        return self._ctx.mode

    @property
    def instrument(self) -> Instrument:
        """The traded contract's rules (``tick_size``, ``qty_step``, ``min_qty``,
        ``min_notional``, ``category``): round prices and sizes to them, the broker never does."""
        return self._ctx.instrument()

    def instrument_of(self, symbol: str) -> Instrument:
        """``instrument`` of one of the run's ``symbols``."""
        return self._ctx.instrument(symbol)

    @property
    def rest_url(self) -> str | None:
        """Base URL of the venue's REST API when paper trading live (history for warm-up);
        None in a backtest."""
        return self._ctx.rest_url

    def open_orders(self, symbol: str | None = None) -> list[str]:
        """Client ids of this strategy's orders that are not finished (of ``symbol`` only, if given)."""
        return self._ctx.open_orders(symbol)

    # -- actions ------------------------------------------------------------------------

    def submit_order(
        self,
        side: int | str,
        qty: float,
        order_type: str = "market",
        price: float | None = None,
        trigger_price: float | None = None,
        time_in_force: str = "GTC",
        reduce_only: bool = False,
        symbol: str | None = None,
    ) -> str:
        """Send an order; returns its client id. ``side`` is ``"buy"``/``"sell"`` or +1/-1;
        ``order_type`` is ``market``, ``limit`` (needs ``price``) or ``stop`` (needs
        ``trigger_price``); ``time_in_force`` is GTC, IOC, FOK or PostOnly. The broker
        answers with an ``OrderUpdate``: accepted, or rejected with a reason. ``symbol``
        defaults to the run's only symbol (a portfolio run must name it)."""
        return self._ctx.submit_order(
            side, qty, order_type, price, trigger_price, time_in_force, reduce_only, symbol
        )

    def cancel_order(self, client_order_id: str, symbol: str | None = None) -> None:
        """Ask the broker to cancel a resting order (its symbol is known from its id)."""
        self._ctx.cancel_order(client_order_id, symbol)

    def target_position(self, qty: float, symbol: str | None = None) -> str | None:
        """Trade ``symbol`` (default: the run's only one) at market toward a signed position
        of ``qty``, counting orders already on their way; returns the order id, or None when
        nothing needs doing."""
        return self._ctx.target_position(qty, symbol)

    def plot(self, name: str, value: float, symbol: str | None = None) -> None:
        """Record a point of the named series ``name`` (``"sma_fast"``) for ``symbol`` (default:
        the run's only symbol), stamped with the clock: kept in the ledger's ``plots`` table and
        drawn over that symbol's price chart by the dashboard and the report. A name of at most
        40 printable characters, a finite value; a bad point is logged and counted, not raised."""
        self._ctx.plot(name, value, symbol)

    def run_inference(self, fn: Callable[[], Sequence[float]], ts_event: int,
                      symbol: str | None = None) -> None:
        """Compute ``fn()`` for ``symbol``'s bar (default: the run's only symbol) that closed at
        ``ts_event`` and receive the result in ``on_prediction`` (``prediction.symbol``). Live,
        it runs in a worker thread so the feed never waits, and the prediction is stamped when
        it finished; one that arrives after the next bar has closed is dropped and counted. In
        a backtest it runs at once."""
        self._ctx.run_inference(fn, ts_event, symbol)

    def run_inference_batch(self, fn: Callable[[], Mapping[str, Sequence[float]]], ts_event: int) -> None:
        """``run_inference`` for several symbols' bars that closed at ``ts_event``, in one job:
        ``fn()`` gives symbol -> outputs, and each symbol's arrives in ``on_prediction``, all
        stamped when the job finished."""
        self._ctx.run_inference_batch(fn, ts_event)

    def request_history(self, fn: Callable[[], Any], tag: str, symbol: str | None = None) -> None:
        """Load ``symbol``'s bars (default: the run's only symbol) from before the clock with
        ``fn()`` (a kline frame; raise ValueError, OSError or RuntimeError when there are none)
        and receive them in ``on_history`` as a ``History`` event tagged ``tag``. Live, it runs
        in a worker thread, so a slow venue never holds up the feed; in a backtest, at once."""
        self._ctx.request_history(fn, tag, symbol)

    # A strategy may also define ``predict_batch(bars: pandas.DataFrame) -> numpy.ndarray``:
    # model outputs for every bar row (NaN where there is none), each computed from that
    # row and the rows before it only. A backtest then calls it once, in batches, and
    # delivers row i as a Prediction when bar i closes, instead of calling run_inference
    # (an ``inference_latency_ns`` attribute delays each delivery by that much). If it takes
    # a ``progress`` keyword, it gets a callable to report rows done: the backtest shows a bar.
    # If it takes a ``symbol`` keyword, it is called once per symbol with that symbol's bars
    # (a portfolio run needs it).

    # -- callbacks (override what you need) ----------------------------------------------

    def check_run(self) -> None:
        """Refuse a run this strategy cannot trade with a ConfigError (bars of another
        interval than its model was made for, say); called before the run is recorded, with
        the run's symbol, interval and instrument already visible."""

    def on_start(self) -> None:
        """Before the first event."""

    def on_bar(self, bar: Bar) -> None:
        """A bar of one of the run's symbols (``bar.symbol``) and its interval closed."""

    def on_bars(self, bars: Mapping[str, Bar]) -> None:
        """Every symbol's bar of one close time (symbol -> bar), after each went to
        ``on_bar``; a symbol without a bar then (an empty interval with ``[bars] empty =
        "skip"``) is missing. Time bars only."""

    def on_timeframe_bar(self, bar: Bar) -> None:
        """A bar of one of the run's higher timeframes (``bar.interval``, one of ``timeframes``)
        closed, folded from ``bar.symbol``'s run bars; it comes right after the run bar that
        ends it went to ``on_bar``. A run with ``--timeframes`` needs a strategy defining this."""

    def on_trades(self, trades: Trades) -> None:
        """A batch of trades arrived (only delivered to strategies that override this)."""

    def on_fill(self, fill: Fill) -> None:
        """One of this strategy's orders was (partly) filled."""

    def on_order_update(self, update: OrderUpdate) -> None:
        """One of this strategy's orders changed state (accepted, rejected, ...)."""

    def on_prediction(self, prediction: Prediction) -> None:
        """A model prediction made for this strategy arrived."""

    def on_history(self, history: History) -> None:
        """Bars asked for with ``request_history`` arrived (``history.bars``), or could not
        be had (``history.error``)."""

    def on_stop(self) -> None:
        """After the last event."""

    def on_save(self) -> dict[str, Any]:
        """State to keep in the ledger so a resumed run can continue (JSON-serialisable)."""
        return {}

    def on_load(self, state: dict[str, Any]) -> None:
        """Restore what ``on_save`` returned, before ``on_start`` of a resumed run."""
