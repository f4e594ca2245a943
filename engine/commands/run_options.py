"""The flags that every run verb shares (config, data, strategy, market, ledger), the config
they resolve to, and the printing of a run's result, for backtest, live and plugin verbs."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.core.config import Config, load_config
from engine.core.symbols import check_symbol
from engine.core.typed import ConfigError, parse_assignments

if TYPE_CHECKING:
    from engine.run.session import SessionResult


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="config file (default: ./config.toml when it exists, else built-in defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config key, e.g. --set broker.taker_fee=0.0004 (repeatable)")


def add_run_args(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument("--data", nargs="+", metavar="PATH",
                   help="trade archives (.csv/.csv.gz), kline CSVs or recordings; globs work "
                        "(default: the bundled synthetic BTCUSDT sample)")
    p.add_argument("--strategy", metavar="NAME", help="registered strategy name or module:Class "
                   "(default: sma_cross)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="strategy parameter (repeatable), e.g. --param fast=10; an unknown key "
                        "lists the strategy's keys (model: the table in strategies/model.py)")
    p.add_argument("--symbol", help="symbol for kline files (trade archives name their own)")
    p.add_argument("--symbols", metavar="A,B,C", help="trade several symbols in one run (a portfolio "
                   "sharing one account); kline files are then given as SYMBOL=PATH (or by the "
                   "names fetch writes); spot:SYMBOL adds a spot market to a linear run, e.g. "
                   "spot:BTCUSDT,BTCUSDT for a basis trade")
    p.add_argument("--interval", help="bar interval: 1m, 5m, 1h, 1d, 90s, tick:N, volume:X, value:X "
                                      "(default: 1m from trade archives, the files' own for klines)")
    p.add_argument("--timeframes", metavar="5m,1h", help="higher timeframes folded from the run's "
                   "--interval bars: each symbol's bars of each go to the strategy's on_timeframe_bar")
    p.add_argument("--start", help="first time to replay (YYYY-MM-DD[THH:MM], UTC)")
    p.add_argument("--end", help="time to stop replaying (exclusive)")
    p.add_argument("--seed", type=int, help="seed of the broker's random models")
    p.add_argument("--ledger", metavar="PATH", help="SQLite ledger file or SQLAlchemy URL "
                   "(default: [ledger] path, papertape.db)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


_FLAG_KEYS = {"symbol": "run.symbol", "category": "run.category", "interval": "run.interval",
              "start": "run.start",
              "end": "run.end", "seed": "run.seed", "ledger": "ledger.path"}


def resolve_config(args: argparse.Namespace) -> Config:
    """The config file (explicit, or ./config.toml) with ``--set`` and flag overrides. A
    ``--strategy`` other than the file's starts from that strategy's defaults. A ``--symbol``
    must be a Bybit symbol, and one the data holds; it makes a one-symbol run even when the
    config lists ``[run] symbols``."""
    path = args.config or ("config.toml" if Path("config.toml").is_file() else None)
    overrides = list(args.overrides) + [
        f"{key}={getattr(args, flag)}" for flag, key in _FLAG_KEYS.items()
        if getattr(args, flag, None) is not None
    ]
    if getattr(args, "symbol", None) is not None:
        check_symbol(args.symbol)
    symbols = parse_symbols(args.symbols) if getattr(args, "symbols", None) is not None else None
    cfg = load_config(path, overrides)
    run = replace(cfg.run, data=tuple(args.data)) if getattr(args, "data", None) else cfg.run
    if symbols is not None:
        run = replace(run, symbols=symbols)
        if len(set(run.portfolio)) != len(symbols):  # each named as the run's category gives it
            raise ConfigError(f"--symbols {args.symbols}: a symbol is listed twice")
    if getattr(args, "symbol", None) is not None and symbols is not None:
        raise ConfigError("give --symbol or --symbols, not both")
    if getattr(args, "symbol", None) is not None:  # the flag overrides the file's [run] symbols too
        run = replace(run, symbols=())
    if getattr(args, "timeframes", None) is not None:
        run = replace(run, timeframes=parse_timeframes(args.timeframes))
    if getattr(args, "symbol", None) is not None and hasattr(args, "data"):
        from engine.feeds.history.sources import check_data_symbol

        check_data_symbol(run.data, args.symbol)
    params = parse_assignments(getattr(args, "param", None) or [], "--param", once=True)
    name = getattr(args, "strategy", None) or cfg.strategy.name
    base = cfg.strategy.params if name == cfg.strategy.name else {}
    strategy = replace(cfg.strategy, name=name, params={**base, **params})
    return replace(cfg, run=run, strategy=strategy)


def parse_symbols(text: str) -> tuple[str, ...]:
    """``--symbols BTCUSDT,ETHUSDT`` (or ``spot:BTCUSDT,linear:BTCUSDT``, a run mixing spot and
    linear): each a Bybit symbol, perhaps with its category, none twice."""
    symbols = tuple(part.strip() for part in text.split(","))
    if not any(symbols):
        raise ConfigError("--symbols: give one or more symbols, e.g. BTCUSDT,ETHUSDT")
    for symbol in symbols:
        check_symbol(symbol.partition(":")[2] or symbol, "--symbols")
    return symbols


def parse_timeframes(text: str) -> tuple[str, ...]:
    """``--timeframes 5m,1h`` as its items; none at all, or an empty one, is a :class:`ConfigError`
    (a run given ``--timeframes ""`` ran without them, silently). Each is checked against the
    run's interval when the data gives it (:func:`engine.bars.timeframes.check_timeframes`)."""
    timeframes = tuple(part.strip() for part in text.split(","))
    if not all(timeframes):
        raise ConfigError(f"--timeframes {text!r}: give one or more intervals, e.g. 5m,1h")
    return timeframes


def default_ledger(args: argparse.Namespace) -> str:
    """``--ledger`` when given, else the ledger backtests and live sessions record to: the
    ``[ledger] path`` of ./config.toml (or ``--config``), papertape.db by default."""
    if getattr(args, "ledger", None):
        return args.ledger
    path = getattr(args, "config", None) or ("config.toml" if Path("config.toml").is_file() else None)
    return load_config(path, []).ledger.path


def print_result(args: argparse.Namespace, result: SessionResult) -> None:
    """A run's result: one JSON object with ``--json``, else the metrics table and what the
    reader should know (rejections, malformed rows, dropped forecasts, a resumed run's parts)."""
    from engine.analysis.report import format_by_symbol, format_metrics

    if args.json:
        print(json.dumps(result.to_json(), default=str))
        return
    title = (f"run {result.run_id} ({result.status}) in {result.ledger}: {result.bars:,} bars, "
             f"{result.fills:,} fills")
    extra: dict[str, Any] = result.extra
    if extra.get("resumed_from") is not None:
        title += (f" since it resumed run {extra['resumed_from']}; the metrics cover every part "
                  "of the run")
    print(format_metrics(result.metrics, title))
    if len(extra.get("by_symbol") or {}) > 1:
        print(format_by_symbol(extra["by_symbol"]))
    if result.rejections:
        first = extra.get("first_rejections", {})
        print("  rejected orders: " + "; ".join(
            f"{n} x {r}" + (f" (first: {first[r]})" if first.get(r, r) != r else "")
            for r, n in result.rejections.items()))
    if extra.get("plots_rejected"):
        print(f"  rejected plot points: {extra['plots_rejected']:,} (bad name or value; see the log)")
    if result.data.get("bad_rows"):  # a cached replay logs no warning: the file was parsed before
        print(f"  malformed rows left out: {result.data['bad_rows']:,} of "
              f"{result.data['rows'] + result.data['bad_rows']:,} (the replay that first read the file "
              "logged each file's reasons and first line)")
    if extra.get("predictions_dropped"):
        print(f"  dropped forecasts: {extra['predictions_dropped']:,} (arrived after the next bar "
              "had closed)")
