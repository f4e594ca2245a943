"""Hosts a strategy on the bus: routes it the events it asked for and turns its calls into
order requests for the broker.

The host is duck-typed (any object with the ``strategies.base.Strategy`` methods works), so
the engine needs no import of the strategies package. Callback errors follow
``on_error``: ``"stop"`` (default) lets the bus stop the run; ``"skip"`` logs and counts
the error and goes on with the next event.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable
from typing import Any

from engine.bars.timeframes import TimeframeBars
from engine.broker import Instrument, SimulatedBroker
from engine.core.bus import Bus
from engine.core.events import (
    BUY,
    SELL,
    Bar,
    BarSet,
    CancelRequest,
    Fill,
    History,
    OrderRequest,
    OrderUpdate,
    Plot,
    Prediction,
    Trades,
)
from engine.core.typed import ConfigError

log = logging.getLogger(__name__)

# Runs a callable off the event loop and queues the event ``deliver(result, ts_init)`` makes.
Offload = Callable[[Callable[[], Any], Callable[[Any, int], Any]], None]

_SIDES = {"buy": BUY, "sell": SELL, BUY: BUY, SELL: SELL}
PLOT_NAME_CHARS = 40  # a plot's name: a legend label, not a document
PLOT_WARNINGS = 10  # rejected plot points logged one by one; later ones only counted


def _overrides(strategy: Any, name: str) -> bool:
    """True when the strategy's class (or ``strategy``, a class) defines ``name`` itself rather
    than inheriting the base no-op."""
    for klass in (strategy if isinstance(strategy, type) else type(strategy)).__mro__:
        if name in vars(klass):
            return klass.__module__ != "strategies.base"
    return False


def check_takes_timeframes(strategy: Any, strategy_id: str, labels: tuple[str, ...]) -> None:
    """A :class:`ConfigError` when a run with higher timeframes ``labels`` has a strategy (an
    instance or its class) without ``on_timeframe_bar`` to receive their bars."""
    if labels and not _overrides(strategy, "on_timeframe_bar"):
        raise ConfigError(f"timeframes {','.join(labels)}: strategy {strategy_id} has no "
                          "on_timeframe_bar to receive them")


class StrategyContext:
    """What a strategy can reach: the clock, its symbols, the account, and order entry.
    ``symbol`` is the run's symbol, or its symbols comma-joined (a portfolio)."""

    def __init__(
        self,
        strategy: Any,
        strategy_id: str,
        symbol: str | tuple[str, ...],
        interval: str,
        bus: Bus,
        broker: SimulatedBroker,
        on_error: str = "stop",
        mode: str = "replay",
        timeframes: TimeframeBars | None = None,
    ) -> None:
        self.strategy = strategy
        self.strategy_id = strategy_id
        self.symbols: tuple[str, ...] = tuple(symbol.split(",")) if isinstance(symbol, str) else tuple(symbol)
        self.symbol = ",".join(self.symbols)
        self._symbol_set = frozenset(self.symbols)
        self.interval = interval
        self.bus = bus
        self.clock = bus.clock
        self.broker = broker
        self.on_error = on_error
        self.errors = 0
        self._seq = 0
        self.mode = mode
        self.rest_url: str | None = None  # the venue's REST API, live only
        self._offload: Offload | None = None
        self.last_bar_close = -1
        self.predictions_dropped = 0
        self.plots_rejected = 0
        self._plot_names: set[str] = set()  # names already checked
        self._in_flight: dict[str, OrderRequest] = {}  # sent, not yet seen by the broker
        strategy.attach(self)
        self._bar_callback = self._guard(strategy.on_bar)
        self._trades_callback = self._guard(strategy.on_trades)
        self._fill_callback = self._guard(strategy.on_fill)
        self._update_callback = self._guard(strategy.on_order_update)
        self._prediction_callback = self._guard(strategy.on_prediction)
        self.timeframes = timeframes.labels if timeframes is not None else ()
        if self.timeframes:  # the higher timeframes' bars follow each run bar (engine.bars.timeframes)
            check_takes_timeframes(strategy, strategy_id, self.timeframes)
            self._higher = timeframes
            self._timeframe_callback = self._guard(strategy.on_timeframe_bar)
        bus.subscribe(Bar, self._on_bar_and_timeframes if self.timeframes else self._on_bar)
        self.reads_bars = _overrides(strategy, "on_bar")
        self.reads_bar_sets = _overrides(strategy, "on_bars")
        if self.reads_bar_sets:
            self._bar_set_callback = self._guard(lambda bar_set: strategy.on_bars(bar_set.bars))
            bus.subscribe(BarSet, self._on_bar_set)
        self.reads_trades = _overrides(strategy, "on_trades")
        if self.reads_trades:
            bus.subscribe(Trades, self._on_trades)
        bus.subscribe(OrderRequest, self._on_request)
        bus.subscribe(Fill, self._on_fill)
        bus.subscribe(OrderUpdate, self._on_order_update)
        bus.subscribe(Prediction, self._on_prediction)
        self._history_callback = self._guard(strategy.on_history)
        bus.subscribe(History, self._on_history)

    # -- account views -------------------------------------------------------------------

    def only_symbol(self, what: str) -> str:
        """The run's one symbol; in a portfolio run ``what`` must name one (a ValueError)."""
        if len(self.symbols) == 1:
            return self.symbols[0]
        raise ValueError(f"{what}: this run trades {len(self.symbols)} symbols ({self.symbol}); "
                         "say which with symbol=")

    def symbol_of(self, symbol: str | None, what: str) -> str:
        """``symbol`` checked against the run's symbols; None means the run's only symbol."""
        if symbol is None:
            return self.only_symbol(what)
        if symbol not in self._symbol_set:
            raise ValueError(f"{what}: {symbol!r} is not a symbol of this run ({self.symbol})")
        return symbol

    def position(self, symbol: str | None = None) -> float:
        return self.broker.position_qty(self.symbol_of(symbol, "position"))

    def positions(self) -> dict[str, float]:
        """Every symbol's signed position (0.0 when flat)."""
        return {s: self.broker.position_qty(s) for s in self.symbols}

    def cash(self) -> float:
        return self.broker.account.cash

    def equity(self) -> float:
        return self.broker.account.equity()

    def instrument(self, symbol: str | None = None) -> Instrument:
        return self.broker.instruments.get(self.broker.account.category, self.symbol_of(symbol, "instrument"))

    def open_orders(self, symbol: str | None = None) -> list[str]:
        flying = [i for i, r in self._in_flight.items() if symbol is None or r.symbol == symbol]
        return [*flying, *(o.id for o in self.broker.open_orders(self.strategy_id)
                           if symbol is None or o.symbol == symbol)]

    # -- order entry ---------------------------------------------------------------------

    def continue_numbering(self, order_ids: list[str]) -> None:
        """Number new orders after the highest ``<strategy_id>-N`` among ``order_ids``."""
        prefix = f"{self.strategy_id}-"
        numbers = [int(i[len(prefix):]) for i in order_ids
                   if i.startswith(prefix) and i[len(prefix):].isdigit()]
        self._seq = max([self._seq, *numbers])

    def next_order_id(self) -> str:
        self._seq += 1
        return f"{self.strategy_id}-{self._seq}"

    def submit_order(self, side, qty, order_type, price, trigger_price, time_in_force,
                     reduce_only, symbol: str | None = None) -> str:
        if side not in _SIDES:
            raise ValueError(f"side must be 'buy', 'sell', +1 or -1, got {side!r}")
        side = _SIDES[side]
        symbol = self.symbol_of(symbol, "submit_order")
        order_id = self.next_order_id()
        now = self.clock.timestamp_ns()
        request = OrderRequest(
            order_id, symbol, side, float(qty), order_type,
            None if price is None else float(price),
            None if trigger_price is None else float(trigger_price),
            time_in_force, bool(reduce_only), self.strategy_id, now, now,
        )
        self._in_flight[order_id] = request
        self.bus.publish(request)
        return order_id

    def cancel_order(self, client_order_id: str, symbol: str | None = None) -> None:
        if symbol is None:  # the order knows its symbol; an unknown id gets the broker's answer
            known = self._in_flight.get(client_order_id)
            symbol = (known.symbol if known is not None else self.broker.orders.symbol(client_order_id)) \
                or self.symbols[0]
        else:
            symbol = self.symbol_of(symbol, "cancel_order")
        now = self.clock.timestamp_ns()
        self.bus.publish(CancelRequest(client_order_id, symbol, self.strategy_id, now, now))

    def target_position(self, qty: float, symbol: str | None = None) -> str | None:
        if not math.isfinite(qty):
            raise ValueError(f"target position must be finite, got {qty}")
        symbol = self.symbol_of(symbol, "target_position")
        # Market orders still on their way count as done; position and the broker's
        # remaining quantities change together, at the fill.
        on_the_way = sum(r.side * r.qty for r in self._in_flight.values()
                         if r.order_type == "market" and r.symbol == symbol)
        on_the_way += sum(o.side * o.remaining for o in self.broker.open_orders(self.strategy_id)
                          if o.type == "market" and o.symbol == symbol)
        delta = qty - (self.broker.position_qty(symbol) + on_the_way)
        if abs(delta) < 1e-12:
            return None
        return self.submit_order(BUY if delta > 0 else SELL, _clean(abs(delta)), "market",
                                 None, None, "GTC", False, symbol)

    def plot(self, name: str, value: float, symbol: str | None = None) -> None:
        """Record a point of series ``name`` for ``symbol`` stamped with the clock; a bad
        name (empty, over ``PLOT_NAME_CHARS``, unprintable), a value that is not a finite
        real number or a symbol not of the run is logged and counted, never raised. Runs on
        every bar of a long backtest, so a known name with a finite float goes straight out."""
        if symbol is None and len(self.symbols) == 1:
            symbol = self.symbols[0]
        if (type(value) is float and value - value == 0.0 and type(name) is str  # finite: inf - inf is NaN
                and name in self._plot_names and type(symbol) is str and symbol in self._symbol_set):
            now = self.clock.timestamp_ns()
            self.bus.publish(Plot(self.strategy_id, symbol, name, value, now, now))
            return
        problem = self._plot_name_problem(name)
        if problem is None:
            number = _finite(value)
            if number is None:
                problem = f"value {value!r} is not a finite number"
            value = number
        if problem is None:
            try:
                symbol = self.symbol_of(symbol, "plot")
            except (TypeError, ValueError) as exc:
                problem = str(exc)
        if problem is not None:
            self.plots_rejected += 1
            if self.plots_rejected <= PLOT_WARNINGS:
                later = "; later rejections are only counted" if self.plots_rejected == PLOT_WARNINGS else ""
                log.warning("%s: plot point rejected: %s%s", self.strategy_id, problem, later)
            return
        now = self.clock.timestamp_ns()
        self.bus.publish(Plot(self.strategy_id, symbol, name, value, now, now))

    def _plot_name_problem(self, name: Any) -> str | None:
        if not isinstance(name, str) or not name.strip():
            return f"name {name!r} is not a non-empty string"
        if len(name) > PLOT_NAME_CHARS or not name.isprintable():
            return f"name {name[:PLOT_NAME_CHARS]!r} is not {PLOT_NAME_CHARS} printable characters or fewer"
        self._plot_names.add(name)
        return None

    # -- routing -------------------------------------------------------------------------

    def _guard(self, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        """The callback as is (errors stop the run), or wrapped to log, count and go on."""
        if self.on_error == "stop":
            return callback

        def guarded(event: Any) -> None:
            try:
                callback(event)
            except Exception as exc:
                self.errors += 1
                self.bus.record_error(callback, event, exc)

        return guarded

    def go_live(self, offload: Offload, rest_url: str | None) -> None:
        """Run live: slow work (inference, history) goes to ``offload``, which runs it off the
        event loop and queues the event it makes; ``rest_url`` is the venue's REST API."""
        self.mode, self._offload, self.rest_url = "live", offload, rest_url

    def _off_loop(self, fn: Callable[[], Any], deliver: Callable[[Any, int], Any]) -> None:
        """``deliver(fn(), ts_init)`` as an event (or a list of events): live, computed off the
        loop and stamped when it finished; in replay, at once."""
        if self._offload is not None:
            self._offload(fn, deliver)
            return
        made = deliver(fn(), self.clock.timestamp_ns())
        for event in made if isinstance(made, list) else (made,):
            self.bus.publish(event)

    def run_inference(self, fn: Callable[[], Any], ts_event: int, symbol: str | None = None) -> None:
        """Compute ``fn()`` (a model's outputs for ``symbol``'s bar closing at ``ts_event``;
        default the run's only symbol) and deliver it as a :class:`Prediction`."""
        symbol = self.symbol_of(symbol, "run_inference")
        self._off_loop(fn, lambda values, now: Prediction(
            self.strategy_id, symbol, tuple(map(float, values)), ts_event, now))

    def run_inference_batch(self, fn: Callable[[], Any], ts_event: int) -> None:
        """Compute ``fn()`` (symbol -> a model's outputs, for the bars closing at ``ts_event``)
        in one job and deliver a :class:`Prediction` per symbol, all stamped when it finished."""
        self._off_loop(fn, lambda outputs, now: [
            Prediction(self.strategy_id, self.symbol_of(symbol, "run_inference_batch"),
                       tuple(map(float, values)), ts_event, now) for symbol, values in outputs.items()])

    def request_history(self, fn: Callable[[], Any], tag: str, symbol: str | None = None) -> None:
        """Load ``symbol``'s bars (default the run's only symbol) from before the clock with
        ``fn()`` (a frame, or raises ValueError / OSError / RuntimeError) and deliver them as
        a :class:`History` event."""
        symbol = self.symbol_of(symbol, "request_history")
        asked = self.clock.timestamp_ns()

        def load() -> tuple[Any, str | None]:
            try:
                return fn(), None
            except (ValueError, OSError, RuntimeError) as exc:
                return None, str(exc) or type(exc).__name__

        self._off_loop(load, lambda got, now: History(self.strategy_id, symbol, tag, got[0], got[1],
                                                       asked, now))

    def _on_bar(self, bar: Bar) -> None:
        if bar.interval == self.interval and bar.symbol in self._symbol_set:
            self.last_bar_close = bar.close_time
            self._bar_callback(bar)

    def _on_bar_and_timeframes(self, bar: Bar) -> None:
        """:meth:`_on_bar` between the higher bars of windows ended before it and those it closes."""
        if bar.interval == self.interval and bar.symbol in self._symbol_set:
            self.last_bar_close = bar.close_time
            for higher in self._higher.ended_before(bar):
                self._timeframe_callback(higher)
            self._bar_callback(bar)
            for higher in self._higher.on_bar(bar):
                self._timeframe_callback(higher)

    def _on_bar_set(self, bar_set: BarSet) -> None:
        if bar_set.interval == self.interval:
            self._bar_set_callback(bar_set)

    def _on_trades(self, trades: Trades) -> None:
        if trades.symbol in self._symbol_set:
            self._trades_callback(trades)

    def _on_request(self, request: OrderRequest) -> None:
        """The broker (subscribed first) has the order now; it tracks it from here."""
        self._in_flight.pop(request.client_order_id, None)

    def _on_fill(self, fill: Fill) -> None:
        if fill.strategy_id == self.strategy_id:
            self._fill_callback(fill)

    def _on_order_update(self, update: OrderUpdate) -> None:
        if update.strategy_id == self.strategy_id:
            self._update_callback(update)

    def _on_prediction(self, prediction: Prediction) -> None:
        if prediction.strategy_id != self.strategy_id:
            return
        if is_late(prediction, self.last_bar_close):
            self.predictions_dropped += 1
            log.warning("%s: prediction for the bar closing at %d arrived after the next bar "
                        "closed; dropped", self.strategy_id, prediction.ts_event)
            return
        self._prediction_callback(prediction)

    def _on_history(self, history: History) -> None:
        if history.strategy_id == self.strategy_id:
            self._history_callback(history)

    def start(self) -> None:
        self.strategy.on_start()

    def stop(self) -> None:
        self.strategy.on_stop()

    def save(self) -> dict[str, Any]:
        return self.strategy.on_save()


def is_late(prediction: Prediction, last_bar_close: int) -> bool:
    """A prediction is late (and dropped) once a newer bar than its own has closed."""
    return prediction.ts_event < last_bar_close


def _finite(value: Any) -> float | None:
    """``value`` as a float if it is a finite real number (an int, a numpy float), else None."""
    if not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int past the floats
        return None
    return number if math.isfinite(number) else None


def _clean(qty: float) -> float:
    """Drop float noise from a difference of quantities (0.30000000000000004 -> 0.3)."""
    return float(f"{qty:.12g}")
