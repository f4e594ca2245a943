"""Backtests: replay history through a :class:`~engine.run.session.Session` on a replay clock."""

from __future__ import annotations

import gc
import inspect
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

from engine.core.bus import HandlerError
from engine.core.clock import ReplayClock
from engine.core.config import Config, RunSection, parse_time
from engine.feeds.history.portfolio import MergedKlineReplay
from engine.feeds.history.portfolio_sources import is_portfolio, is_recording, open_portfolio
from engine.feeds.history.recording import RecordingReplay
from engine.feeds.history.replay import KlineReplay
from engine.feeds.history.sources import DataError, bars_by_symbol, open_source
from engine.run.session import Market, Session, SessionResult
from engine.strategy.predictions import BatchPredictions

log = logging.getLogger(__name__)


class RunFailed(RuntimeError):
    """A run stopped on an error; ``result`` holds what the ledger recorded up to it."""

    def __init__(self, message: str, result: SessionResult) -> None:
        super().__init__(message)
        self.result = result


def run_backtest(cfg: Config, *, progress: bool = True, source=None, ledger=None) -> SessionResult:
    """Replay ``cfg.run.data`` through the strategy, broker and ledger; return the result.
    A sweep worker passes the ``source`` it opened once (for ``cfg.run``) and its ``ledger``."""
    run = cfg.run
    if source is None:
        source = open_run_source(run)
    interval = source.label if source.kind == "bars" else (run.interval or "1m")
    rng = source.range
    market = Market(rng.symbol, rng.category, interval, "trades" if source.kind != "bars" else "bars",
                    rng.start, rng.end, tuple(str(p) for p in run.data),
                    starts_in_a_bar=source.cut_start is not None)
    session = Session(cfg, ReplayClock(rng.start), market, kind="backtest",
                      ledger_target=cfg.ledger.path,
                      save_state_every_bar=isinstance(source, RecordingReplay), ledger=ledger)
    if session.host.reads_bar_sets and isinstance(source, KlineReplay):
        source = MergedKlineReplay([source])  # a portfolio of one: its bars then come in sets
    if isinstance(source, MergedKlineReplay):
        source.bar_sets = session.host.reads_bar_sets
    if callable(getattr(session.strategy, "predict_batch", None)):
        _install_batch_predictions(session, source, cfg, progress)
    unit = "bars" if source.kind == "bars" else "trades"
    bar = tqdm(total=source.total_rows, unit=unit, unit_scale=True, disable=None if progress else True,
               desc=f"replay {rng.symbol}")
    try:
        with _fewer_collections():
            session.start()
            source.run(session.bus, bar.update, session.wants_fine_batches)
            session.end_of_data(rng.end, final=not isinstance(source, RecordingReplay))
    except HandlerError as exc:
        log.error("run %d stopped: %s", session.run_id, exc)
        raise RunFailed(str(exc), session.close("failed", str(exc))) from exc
    except KeyboardInterrupt:
        session.close("interrupted", "interrupted by the user")
        raise
    finally:
        bar.close()
    result = session.close("finished")
    result.data |= {"rows": source.total_rows, "bad_rows": source.bad_rows}
    return result


def open_run_source(run: RunSection):
    """The replay source of ``[run]``: one symbol's, or the merged sources of ``symbols``."""
    start_ns, end_ns = parse_time(run.start, "--start"), parse_time(run.end, "--end")
    names = run.portfolio  # each market's one name: linear:BTCUSDT is BTCUSDT in a linear run
    if is_portfolio(run.data, names) and not is_recording(run.data):
        return open_portfolio(run.data, symbols=names, category=run.category,
                              interval=run.interval, start_ns=start_ns, end_ns=end_ns)
    source = open_source(run.data, symbol=names[0], category=run.category, interval=run.interval,
                         start_ns=start_ns, end_ns=end_ns)
    if run.symbols and source.range.symbol != ",".join(names):  # a recording names its symbols
        raise DataError(f"--symbols {','.join(run.symbols)}: the data holds {source.range.symbol}")
    return source


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collect cyclic garbage about 70 times less often while replaying. A replay makes
    millions of short-lived tuples (bars, ledger rows), and at Python's default thresholds
    a collection ran every 700 of them: 0.56 s of collecting in a 1M-bar run, 0.26 s with
    these settings. What setup built is frozen, so collections skip it."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _install_batch_predictions(session: Session, source, cfg: Config, progress: bool) -> None:
    """Run the strategy's ``predict_batch`` over every bar of the run, one symbol at a time
    (a first pass over the data, with a progress bar when it takes a ``progress`` callback),
    and have each row delivered when its bar closes."""
    market = session.market
    bars = bars_by_symbol(source, market.interval, cfg.bars)
    predict = session.strategy.predict_batch
    takes = inspect.signature(predict).parameters
    if len(bars) > 1 and "symbol" not in takes:
        raise DataError(f"strategy {session.strategy_name}: its predict_batch takes no symbol=, so it "
                        f"cannot forecast the {len(bars)} symbols of this run")
    log.info("computing batch predictions for %d bars", sum(len(b) for b in bars.values()))
    with tqdm(total=sum(len(b) for b in bars.values()), unit="bars", unit_scale=True, desc="forecasts",
              leave=False, disable=None if progress and "progress" in takes else True) as bar:
        outputs = {}
        for symbol, frame in bars.items():
            options = {"progress": bar.update} if "progress" in takes else {}
            if "symbol" in takes:
                options["symbol"] = symbol
            outputs[symbol] = predict(frame, **options)
    latency_ns = int(getattr(session.strategy, "inference_latency_ns", 0))  # measured by the forecasts
    for symbol, frame in bars.items():
        BatchPredictions(session.bus, session.strategy_name, symbol, market.interval, frame, outputs[symbol],
                         latency_ns)
