"""A trading session: the bus, broker, bar aggregator, strategy and ledger wired together.

Backtests and live paper trading build the same :class:`Session`; only the clock and the
source of events differ. Subscription order fixes the per-event order of DESIGN.md: the
broker matches first, then the aggregator folds trades, then the strategy sees the event,
then the ledger records it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from engine.analysis.by_symbol import by_symbol_for_run
from engine.analysis.metrics import metrics_for_run
from engine.bars.aggregator import make_aggregator, parse_interval
from engine.bars.bar_sets import BarSetCollector
from engine.bars.bar_sums import INVERSE_TURNOVER_SCALE, TURNOVER_SCALE
from engine.bars.timeframes import TimeframeBars, check_timeframes
from engine.broker.from_config import broker_from_config
from engine.core import plugins
from engine.core.bus import Bus
from engine.core.clock import NS_PER_MS, Clock
from engine.core.config import Config
from engine.core.errors import UserError
from engine.core.events import Bar, CatchUp, FeedStatus, Trades
from engine.core.typed import build
from engine.ledger.recorder import LedgerRecorder
from engine.ledger.store import Ledger
from engine.strategy.host import StrategyContext

log = logging.getLogger(__name__)


def _no_bar_sets(name: str, interval: str, reads_bars: bool) -> None:
    """``on_bars`` gets one close time's bars of every symbol, which only time bars share: a
    strategy that decides there alone would trade nothing on ``interval`` (refused); one that
    also reads ``on_bar`` runs, told that its ``on_bars`` is never called."""
    why = (f"strategy {name} reads on_bars (one close time's bars of every symbol), which only time "
           f"bars give; {interval} bars close on their own counts")
    if not reads_bars:
        raise UserError(f"{why}, so it would trade nothing: give a time --interval (1m, 1h, ...)")
    log.warning("%s: its on_bars is never called in this run", why)


@dataclass(frozen=True)
class Market:
    """What a session trades and how its data arrives; ``symbol`` is the run's symbol, or
    its symbols comma-joined (a portfolio)."""

    symbol: str
    category: str
    interval: str
    match_on: str  # "trades" or "bars"
    data_start: int
    data_end: int
    data_files: tuple[str, ...] = ()
    starts_in_a_bar: bool = True  # a live start or a --start: its first bar is partial

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self.symbol.split(","))


@dataclass
class SessionResult:
    """What a finished session reports (the ``--json`` object of backtest and live)."""

    run_id: int
    ledger: str
    status: str
    bars: int
    fills: int
    metrics: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    rejections: dict[str, int] = field(default_factory=dict)
    strategy_errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out |= out.pop("extra")
        return out


def load_strategy(spec: str, params: dict[str, Any]) -> Any:
    """An instance of the strategy ``spec`` with typed parameters from ``params``."""
    cls = plugins.load_strategy_class(spec)
    if not isinstance(cls, type) or not hasattr(cls, "config_class") or not hasattr(cls, "attach"):
        raise plugins.PluginError(f"{spec!r} is not a papertape Strategy class")
    config = build(cls.config_class, params, f"strategy {spec} parameters")
    try:
        return cls(config)
    except UserError:  # the strategy's own one-line refusal (a missing checkpoint, say) as it is
        raise
    except Exception as exc:  # the strategy's own constructor: before any run is recorded
        raise plugins.PluginError(f"strategy {spec!r} could not be made: {exc!r}") from None


class Session:
    """One run: builds every part, records to the ledger, and reports at the end."""

    def __init__(
        self,
        cfg: Config,
        clock: Clock,
        market: Market,
        *,
        kind: str,
        ledger_target: str,
        resume_from: int | None = None,
        save_state_every_bar: bool = False,
        ledger: Any = None,
        strategy: Any = None,
    ) -> None:
        # one spelling per interval ("60", "1H" and "1h" are 1h): bars carry the label, and the
        # recorder and the strategy pick their bars by it
        market = dataclasses.replace(market, interval=parse_interval(market.interval).label)
        self.cfg, self.market, self.kind = cfg, market, kind
        self.resumed_from = resume_from
        self.bus = Bus(clock)
        self.clock = clock
        self.broker = broker_from_config(self.bus, cfg.broker, cfg.account, category=market.category,
                                         match_on=market.match_on, seed=cfg.run.seed,
                                         symbols=market.symbols)
        self.aggregator = None  # the one symbol's (None in a portfolio: see ``aggregators``)
        self.aggregators: dict[str, Any] = {}
        self.bar_sets: BarSetCollector | None = None
        if market.match_on == "trades":
            self._build_aggregators(cfg, clock, market)
        strategy_cfg = cfg.strategy
        self.strategy_name = strategy_cfg.name
        # a live session makes its strategy before its data starts (see engine.run.live)
        self.strategy = strategy if strategy is not None else load_strategy(strategy_cfg.name,
                                                                             strategy_cfg.params)
        # a higher window is partial where a run bar is (a cut inside it), and always when it
        # opened before a resumed run's start: its first run bars went to the earlier process
        cut = resume_from is not None or (market.starts_in_a_bar and cfg.bars.first_partial == "skip")
        timeframes = TimeframeBars(check_timeframes(cfg.run.timeframes, parse_interval(market.interval)),
                                   market.data_start if cut else None,
                                   INVERSE_TURNOVER_SCALE if market.category == "inverse" else TURNOVER_SCALE)
        self.host = StrategyContext(self.strategy, strategy_cfg.name, market.symbol,
                                    market.interval, self.bus, self.broker, strategy_cfg.on_error,
                                    mode="live" if kind == "live" else "replay", timeframes=timeframes)
        if self.host.reads_bar_sets and self.aggregators and parse_interval(market.interval).is_time:
            self.bar_sets = BarSetCollector(parse_interval(market.interval), clock, self.bus.publish,
                                            cfg.bars.close_delay_ms * NS_PER_MS)
            self.bus.subscribe(Bar, self.bar_sets.on_bar)
        if self.host.reads_bar_sets and not parse_interval(market.interval).is_time:
            _no_bar_sets(strategy_cfg.name, market.interval, self.host.reads_bars)
        self.strategy.check_run()
        # a sweep worker passes a MemoryLedger: the same rows, sent on to the sweep's ledger; a
        # replay's batches are cut by row count alone, so its ledger bytes never depend on timing
        self.ledger = ledger if ledger is not None else Ledger(
            ledger_target, cfg.ledger.batch_rows, cfg.ledger.flush_seconds if kind == "live" else None)
        try:
            self.run_id = self.ledger.start_run(
                kind=kind, strategy=strategy_cfg.name,
                params=json.dumps(dataclasses.asdict(self.strategy.config), sort_keys=True),
                symbol=market.symbol, category=market.category, interval=market.interval,
                data_start=market.data_start, data_end=market.data_end,
                data_files=json.dumps(list(market.data_files)), seed=cfg.run.seed,
                initial_cash=cfg.account.cash, config=json.dumps(dataclasses.asdict(cfg), default=str),
                resumed_from=resume_from,
            )
        except BaseException:  # a refused resume: no run, and no ledger writer left behind
            self.ledger.close()
            raise
        self.recorder = LedgerRecorder(self.bus, self.ledger, self.run_id, self.broker,
                                       market.symbol, market.interval)
        if save_state_every_bar:  # live: a run killed at any time resumes from its last bar
            self.bus.subscribe(Bar, self._save_state)
        self.closed = False

    def _build_aggregators(self, cfg: Config, clock: Clock, market: Market) -> None:
        """One aggregator per symbol on the shared clock, each fed only its symbol's trades."""
        spec = parse_interval(market.interval)
        options: dict[str, Any] = {"inverse": market.category == "inverse"}
        if spec.is_time:
            options |= {"close_delay_ns": cfg.bars.close_delay_ms * NS_PER_MS,
                        "empty": cfg.bars.empty, "first_partial": cfg.bars.first_partial,
                        "start_ns": market.data_start if market.starts_in_a_bar else None}
        for symbol in market.symbols:
            self.aggregators[symbol] = make_aggregator(symbol, spec, clock, self.bus.publish, **options)
        if len(self.aggregators) == 1:
            self.aggregator = next(iter(self.aggregators.values()))
            self.bus.subscribe(Trades, self.aggregator.on_trades)
        else:
            aggregators = self.aggregators
            self.bus.subscribe(Trades, lambda trades: aggregators[trades.symbol].on_trades(trades))
        if spec.is_time:
            self._late_at_gap: dict[str, int] = dict.fromkeys(self.aggregators, 0)
            self.bus.subscribe(FeedStatus, self._on_feed_status)
            self.bus.subscribe(CatchUp, self._on_catch_up)

    def _on_feed_status(self, status: FeedStatus) -> None:
        """Hold bar closes of the status's symbol (every symbol when it names none of
        them) while a feed gap is open."""
        if status.symbol in self.aggregators:
            self._feed_status_of(status.symbol, status)
        else:
            for symbol in self.aggregators:
                self._feed_status_of(symbol, status)

    def _on_catch_up(self, catch_up: CatchUp) -> None:
        """A closing gap's held trades before ``ts_event`` are in: close its held bars that
        end by then, each with the broker as it stood at its close."""
        aggregator = self.aggregators.get(catch_up.symbol)
        if aggregator is not None and aggregator.held:
            aggregator.close_through(catch_up.ts_event)

    def _feed_status_of(self, symbol: str, status: FeedStatus) -> None:
        """Hold bar closes while a feed gap is open; close what is due once it is filled
        (or given up on), so no bar is closed over missing trades. A silence noticed only
        after its bars closed leaves backfilled trades late: that gap is recorded unfilled."""
        aggregator = self.aggregators[symbol]
        if status.status in ("disconnected", "silent"):
            if not aggregator.held:
                self._late_at_gap[symbol] = aggregator.late_trades
            aggregator.hold()
        elif status.status in ("backfilled", "unfilled"):
            aggregator.release()
            late = aggregator.late_trades - self._late_at_gap[symbol]
            self._late_at_gap[symbol] = aggregator.late_trades
            if late and status.status == "backfilled":
                self.bus.publish(status._replace(
                    status="unfilled",
                    symbol=symbol, detail=f"{late} backfilled trade(s) came after their bars had closed"))

    def wants_fine_batches(self) -> bool:
        """True while an order is working or the strategy reads trades: replay then keeps
        trade batches short so fills and trades are seen when they happen."""
        return bool(self.broker.active) or self.host.reads_trades

    def _save_state(self, bar: Bar) -> None:
        if bar.symbol == self.market.symbols[-1] and bar.interval == self.market.interval:
            self.recorder.save_state(self.strategy_name, bar.ts_init, self.host.save())

    def start(self) -> None:
        """Start timers (bar closes, funding) at the data start and call ``on_start``."""
        start = self.market.data_start
        for aggregator in self.aggregators.values():
            if hasattr(aggregator, "start_at"):
                aggregator.start_at(start)
        if self.bar_sets is not None:  # after the aggregators: its timer fires after theirs
            self.bar_sets.start_at(start)
        self.broker.start_funding(start)
        self.host.start()

    def end_of_data(self, end_ns: int, *, final: bool = True) -> None:
        """The data ends at ``end_ns``: close the bars that are complete, then stop the
        strategy. ``final`` history (archives, klines) has no later trade, so every bar
        that ended by then closes at once. A live session's stop (and the replay of its
        recording) is not final: a bar still inside its close delay may be missing trades
        in flight, so only the bars whose delay has passed close, as their timers would."""
        delay = self.cfg.bars.close_delay_ms * NS_PER_MS if final else 0
        self.bus.advance_to(end_ns + delay)
        self.stop()

    def stop(self) -> None:
        """Call ``on_stop`` and record the strategy's saved state."""
        self.host.stop()
        self.recorder.flush_bars()
        self.recorder.save_state(self.strategy_name, self.clock.timestamp_ns(), self.host.save())

    def close(self, status: str, error: str | None = None, data_end: int | None = None) -> SessionResult:
        """Flush the ledger, mark the run, compute metrics from the ledger, and report.
        ``data_end`` is where a live session's data stopped."""
        self.closed = True
        self.recorder.flush_bars()
        dropped = self.host.predictions_dropped
        summary = {"rejections": dict(self.broker.rejections), "bus_errors": self.bus.errors,
                   "predictions_dropped": dropped, "plots_rejected": self.host.plots_rejected}
        if data_end is not None:
            self.market = dataclasses.replace(self.market, data_end=data_end)
        self.ledger.finish_run(self.run_id, status, error, summary, data_end=data_end)
        self.ledger.close()
        reader = self.ledger.reader()
        try:
            metrics = metrics_for_run(reader, self.run_id)
            by_symbol = by_symbol_for_run(reader, self.run_id)
        finally:
            reader.close()
        return SessionResult(
            run_id=self.run_id, ledger=self.ledger.target, status=status,
            bars=self.recorder.bars, fills=self.broker.fill_count, metrics=metrics,
            data={"symbol": self.market.symbol, "category": self.market.category,
                  "interval": self.market.interval, "start_ns": self.market.data_start,
                  "end_ns": self.market.data_end, "files": list(self.market.data_files)},
            rejections=dict(self.broker.rejections), strategy_errors=self.host.errors,
            extra={"symbols": list(self.market.symbols), "by_symbol": by_symbol,
                   "predictions_dropped": dropped, "plots_rejected": self.host.plots_rejected,
                   "resumed_from": self.resumed_from,
                   "first_rejections": dict(self.broker.first_rejections)},
        )
