"""Resuming a paper-trading run from its ledger: positions and cash rebuilt from the fills
and funding recorded (positions come only from fills), open orders put back on the
simulated venue, and the strategy's last saved state handed to ``on_load``."""

from __future__ import annotations

import dataclasses
import json
import logging

import pandas as pd

from engine.bars.aggregator import parse_interval
from engine.broker.orders import FINAL, Order
from engine.core import plugins
from engine.core.config import Config
from engine.core.typed import ConfigError, build
from engine.ledger.liveness import refuse_continued
from engine.ledger.reader import LedgerQueryError, LedgerReader
from engine.ledger.schema import open_engine
from engine.run.session import Session

log = logging.getLogger(__name__)


MARKET = ("symbol", "category", "interval")


def resumed_config(cfg: Config, run_id: int, *, strategy: str | None, params: dict[str, str],
                   market: dict[str, str | None], symbols: tuple[str, ...] | None = None,
                   timeframes: tuple[str, ...] | None = None) -> Config:
    """``cfg`` set to continue run ``run_id`` of its ledger: that run's strategy, parameters,
    symbol (or symbols), category, interval and higher timeframes. A ``strategy``, ``market``
    value, ``symbols`` or ``timeframes`` given that differs is refused (the run would change
    what it trades); ``params`` given override the run's, each change logged as a warning."""
    reader = LedgerReader(cfg.ledger.path)
    try:
        previous = reader.run(run_id)
    finally:
        reader.close()
    if previous["kind"] != "live":
        raise ConfigError(f"run {run_id} is a {previous['kind']}; --resume continues live runs")
    check_resumable(cfg.ledger.path, previous)
    if strategy is not None and strategy != previous["strategy"]:
        raise ConfigError(f"run {run_id} ran strategy {previous['strategy']!r}; --resume continues it "
                          f"with that strategy, not {strategy!r}")
    if market.get("interval") is not None:  # 60s and 1m are the same bars
        try:
            market = market | {"interval": parse_interval(market["interval"]).label}
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    for key in MARKET:
        if market.get(key) is not None and market[key] != previous[key]:
            raise ConfigError(f"run {run_id} traded {key} {previous[key]}; --resume cannot change it to "
                              f"{market[key]}")
    traded = tuple(previous["symbol"].split(","))
    if symbols is not None and symbols != traded:
        raise ConfigError(f"run {run_id} traded symbols {','.join(traded)}; --resume cannot change them "
                          f"to {','.join(symbols)}")
    ran = _timeframes_of(previous)
    if timeframes is not None and _labels(timeframes) != _labels(ran):
        raise ConfigError(f"run {run_id} ran timeframes {','.join(ran) or '(none)'}; --resume cannot change "
                          f"them to {','.join(timeframes) or '(none)'}")
    stored = json.loads(previous["params"])
    cls = plugins.load_strategy_class(previous["strategy"])
    config_class = getattr(cls, "config_class", None)
    if config_class is not None and params:
        before = build(config_class, stored, "--param")
        after = build(config_class, stored | params, "--param")
        for field in dataclasses.fields(config_class):
            old, new = getattr(before, field.name), getattr(after, field.name)
            if old != new:
                log.warning("resuming run %d with %s %r instead of %r", run_id, field.name, new, old)
    run = dataclasses.replace(cfg.run, **{key: previous[key] for key in MARKET if key != "symbol"},
                              symbol=traded[0], symbols=traded if len(traded) > 1 else (), timeframes=ran)
    chosen = dataclasses.replace(cfg.strategy, name=previous["strategy"], params=stored | params)
    return dataclasses.replace(cfg, run=run, strategy=chosen)


def _timeframes_of(previous: dict) -> tuple[str, ...]:
    """The higher timeframes a recorded run ran with (none for a run recorded before them)."""
    config = json.loads(previous.get("config") or "{}")
    return tuple(config.get("run", {}).get("timeframes") or ())


def _labels(timeframes: tuple[str, ...]) -> set[str]:
    """Each timeframe's one spelling (60m and 1h are one), for comparing two lists."""
    try:
        return {parse_interval(t).label for t in timeframes}
    except ValueError as exc:
        raise ConfigError(f"timeframes: {exc}") from None


def check_resumable(ledger: str, previous: dict) -> None:
    """Refuse to resume a run that is still running (its heartbeat is fresh) or that
    another run already continues: either would fork one account into two histories. (The
    lease taken with the new run's row settles two resumers that pass this at once.)"""
    run_id = previous["id"]
    if previous["status"] == "running":
        raise ConfigError(f"run {run_id} is still running (pid {previous['pid']} on {previous['host']}, "
                          "heartbeat fresh): stop it before resuming it")
    engine = open_engine(ledger)
    try:
        with engine.connect() as conn:
            refuse_continued(conn, run_id)
    finally:
        engine.dispose()


def downtime_start(reader: LedgerReader, run_id: int) -> tuple[int, bool]:
    """Where run ``run_id``'s record stops, so its continuation starts there: the close of
    its last recorded bar (a bar boundary: True), or, if it recorded none, its own start
    (inside a bar: False). Trades after it were never recorded in a bar; the continuation
    backfills them, with the rest of the downtime, from REST."""
    bars = reader.frame("SELECT max(ts) AS ts FROM equity WHERE run_id = :run", {"run": int(run_id)})
    last = bars.ts.iloc[0]
    if last is not None and not pd.isna(last):
        return int(last), True
    return int(reader.run(run_id)["data_start"]), False


def restore_session(session: Session, reader: LedgerReader, run_id: int) -> None:
    """Bring ``session`` to where run ``run_id`` (and the runs it resumed) left off."""
    previous = reader.run(run_id)
    if previous["symbol"] != session.market.symbol or previous["category"] != session.market.category:
        raise LedgerQueryError(f"run {run_id} traded {previous['category']} {previous['symbol']}, "
                               f"not {session.market.category} {session.market.symbol}")
    if previous["strategy"] != session.strategy_name:
        raise LedgerQueryError(f"run {run_id} ran strategy {previous['strategy']!r}, "
                               f"not {session.strategy_name!r}")
    ids = reader.chain(run_id)
    account = session.broker.account
    account.cash = account.initial_cash = float(reader.run(ids[0])["initial_cash"])
    fills = reader.fills(ids)
    for f in fills.itertuples():
        account.apply_fill(f.symbol, int(f.side), float(f.qty), float(f.price), float(f.fee))
    for f in reader.funding(ids).itertuples():
        account.cash -= float(f.payment)
        account.funding_paid += float(f.payment)
    _restore_marks(session, reader, ids)
    _restore_orders(session, reader, ids, fills)
    states = reader.table("strategy_state", ids, "ts, id")
    if not states.empty:
        session.strategy.on_load(json.loads(states.state.iloc[-1]))
    session.broker.account_restored()
    positions = ", ".join(f"{s} {session.broker.position_qty(s):g}" for s in session.market.symbols)
    log.warning("resumed from run %d: position %s, cash %.2f, %d open order(s)", run_id, positions,
                account.cash, len(session.broker.active))


def _restore_marks(session: Session, reader: LedgerReader, ids: list[int]) -> None:
    """Each symbol's mark as its last equity snapshot left it."""
    last = reader.exposure(ids).last_mark
    for symbol in session.market.symbols:
        if symbol in last.index and not pd.isna(last[symbol]):
            session.broker.account.set_mark(symbol, float(last[symbol]))


def _restore_orders(session: Session, reader: LedgerReader, ids: list[int], fills: pd.DataFrame) -> None:
    orders = reader.table("orders", ids, "ts_init, id")
    updates = reader.table("order_updates", ids, "ts_init, id")
    finished = set(updates.client_order_id[updates.status.isin(FINAL)])
    accepted = set(updates.client_order_id[updates.status == "accepted"])
    triggered = set(updates.client_order_id[updates.status == "triggered"])
    filled = fills.groupby("client_order_id").qty.sum().to_dict() if not fills.empty else {}
    broker, host = session.broker, session.host
    for o in orders.itertuples():
        order = Order(o.client_order_id, o.strategy_id, o.symbol, int(o.side), float(o.qty),
                      o.order_type, _opt(o.price), _opt(o.trigger_price), o.time_in_force,
                      bool(o.reduce_only), int(o.ts_init), arrival=int(o.ts_init),
                      filled=float(filled.get(o.client_order_id, 0.0)),
                      triggered=o.client_order_id in triggered)
        order.status = "done" if o.client_order_id in finished else "active"
        if order.status == "active" and order.id in accepted:
            broker.activate(order)
        elif order.status == "active":
            order.status = "lost"  # sent but never accepted before the crash: not on the venue
        broker.orders.add(order)
    host.continue_numbering([o.client_order_id for o in orders.itertuples()])


def _opt(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)
