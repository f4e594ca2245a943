"""The ``papertape`` command line: one verb per job, ``--json`` for machines.

Results go to stdout; progress bars and logs go to stderr. Problems a user can fix (bad
config, missing file, unknown strategy or symbol) end the command with one line naming the
problem and exit code 2; a run that fails on an error exits with 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from importlib.metadata import entry_points
from pathlib import Path

from tqdm import tqdm

from engine import __version__, plugins
from engine.backtest import RunFailed, run_backtest
from engine.bars import parse_interval
from engine.bars_io import bars_to_frame, write_kline_csv
from engine.clock import NS_PER_MS
from engine.config import Config, load_config, parse_time
from engine.datasource import DataError, aggregate_bars, open_source
from engine.exchange.cli import register as register_serve_exchange
from engine.feeds.archive import ArchiveError
from engine.feeds.replay import KlineReplay
from engine.fetch import register as register_fetch
from engine.ledger_query import LedgerQueryError, LedgerReader
from engine.live import MAINNET_REST, MAINNET_WS, LiveOptions, run_live
from engine.metrics import forecasts_for_run, metrics_for_run
from engine.report import format_metrics, format_runs
from engine.resume import MARKET, resumed_config
from engine.typed import ConfigError, parse_assignments

log = logging.getLogger("papertape")

USER_ERRORS = (ConfigError, DataError, ArchiveError, plugins.PluginError, LedgerQueryError,
               FileNotFoundError)

EXAMPLES = """\
examples:
  papertape backtest                          the bundled sample with sma_cross
  papertape backtest --data 'data/BTCUSDT2025-*.csv.gz' --param fast=20 --param slow=60
  papertape backtest --data klines-1h.csv --set broker.slippage_bps=2 --json
  papertape bars --data BTCUSDT2025-06-01.csv.gz --interval 5m --out bars.csv
  papertape runs                              runs recorded in ./papertape.db
  papertape report --run 3 --out report.html
"""


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="config file (default: ./config.toml when it exists, else built-in defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config key, e.g. --set broker.taker_fee=0.0004 (repeatable)")


def _run_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--data", nargs="+", metavar="PATH",
                   help="trade archives (.csv/.csv.gz), kline CSVs or recordings; globs work "
                        "(default: the bundled synthetic BTCUSDT sample)")
    p.add_argument("--strategy", metavar="NAME", help="registered strategy name or module:Class "
                   "(default: sma_cross)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="strategy parameter (repeatable), e.g. --param fast=10; an unknown key "
                        "lists the strategy's keys (model: the table in strategies/model.py)")
    p.add_argument("--symbol", help="symbol for kline files (trade archives name their own)")
    p.add_argument("--interval", help="bar interval: 1m, 5m, 1h, 1d, 90s, tick:N, volume:X, value:X "
                                      "(default: 1m from trade archives, the files' own for klines)")
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
    ``--strategy`` other than the file's starts from that strategy's defaults."""
    path = args.config or ("config.toml" if Path("config.toml").is_file() else None)
    overrides = list(args.overrides) + [
        f"{key}={getattr(args, flag)}" for flag, key in _FLAG_KEYS.items()
        if getattr(args, flag, None) is not None
    ]
    cfg = load_config(path, overrides)
    run = replace(cfg.run, data=tuple(args.data)) if getattr(args, "data", None) else cfg.run
    params = parse_assignments(getattr(args, "param", None) or [], "--param")
    name = getattr(args, "strategy", None) or cfg.strategy.name
    base = cfg.strategy.params if name == cfg.strategy.name else {}
    strategy = replace(cfg.strategy, name=name, params={**base, **params})
    return replace(cfg, run=run, strategy=strategy)


def cmd_backtest(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    try:
        result = run_backtest(cfg, progress=not args.no_progress)
    except RunFailed as exc:
        _emit_result(args, exc.result)
        print(f"papertape: run {exc.result.run_id} failed: {exc}", file=sys.stderr)
        return 1
    _emit_result(args, result)
    return 0


def _emit_result(args: argparse.Namespace, result) -> None:
    if args.json:
        print(json.dumps(result.to_json(), default=str))
        return
    title = (f"run {result.run_id} ({result.status}) in {result.ledger}: {result.bars:,} bars, "
             f"{result.fills:,} fills")
    if result.extra.get("resumed_from") is not None:
        title += (f" since it resumed run {result.extra['resumed_from']}; the metrics cover every part "
                  "of the run")
    print(format_metrics(result.metrics, title))
    if result.rejections:
        first = result.extra.get("first_rejections", {})
        print("  rejected orders: " + "; ".join(
            f"{n} x {r}" + (f" (first: {first[r]})" if first.get(r, r) != r else "")
            for r, n in result.rejections.items()))
    if result.extra.get("predictions_dropped"):
        print(f"  dropped forecasts: {result.extra['predictions_dropped']:,} (arrived after the next bar "
              "had closed)")


def cmd_bars(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    interval = args.interval or cfg.run.interval or "1m"
    source = open_source(cfg.run.data, symbol=cfg.run.symbol, category=cfg.run.category,
                         interval=interval, start_ns=parse_time(cfg.run.start, "--start"),
                         end_ns=parse_time(cfg.run.end, "--end"))
    if isinstance(source, KlineReplay):
        frame = source.frame
    else:
        with tqdm(total=source.total_rows, unit="trades", unit_scale=True, leave=False,
                  disable=None if not args.no_progress else True, desc="aggregate") as bar:
            bars = aggregate_bars(source, interval, close_delay_ns=cfg.bars.close_delay_ms * NS_PER_MS,
                                  empty=cfg.bars.empty, first_partial=cfg.bars.first_partial,
                                  progress=bar.update)
        frame = bars_to_frame(bars)
    write_kline_csv(frame, args.out)
    summary = {"out": str(args.out), "bars": len(frame), "interval": interval,
               "rows": source.total_rows, "bad_rows": source.bad_rows}
    print(json.dumps(summary) if args.json else
          f"wrote {len(frame):,} {interval} bars to {args.out} from {source.total_rows:,} rows")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    reader = LedgerReader(args.ledger)
    try:
        runs = reader.runs()
    finally:
        reader.close()
    if args.json:
        print(runs.drop(columns=["summary"]).to_json(orient="records"))
    else:
        print(format_runs(runs))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from engine.html_report import write_html_report

    reader = LedgerReader(args.ledger)
    try:
        run = reader.run(args.run)
        metrics = metrics_for_run(reader, run["id"])
        forecasts = forecasts_for_run(reader, run["id"])
        out = args.out or f"report-run{run['id']}.html"
        write_html_report(reader, run["id"], metrics, out)
    finally:
        reader.close()
    if args.json:
        print(json.dumps({"run_id": run["id"], "ledger": args.ledger, "status": run["status"],
                          "report": str(out), "metrics": metrics, "forecasts": forecasts}))
    else:
        print(format_metrics(metrics, f"run {run['id']} ({run['status']}) {run['strategy']} "
                                      f"{run['symbol']} {run['interval']}"))
        if forecasts:
            print(f"  forecasts: {forecasts['forecasts']:,}, {forecasts['dropped']:,} dropped as late; from "
                  f"bar close to forecast median {forecasts['latency_ms_median']:.0f} ms, p99 "
                  f"{forecasts['latency_ms_p99']:.0f} ms")
        print(f"report written to {out}")
    return 0


def parse_duration(text: str) -> float:
    """``30s``, ``5m``, ``2h``, ``1d`` or plain seconds, as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    try:
        if value and value[-1] in units:
            seconds = float(value[:-1]) * units[value[-1]]
        else:
            seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30s, 5m, 2h)") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"duration must be positive, got {text!r}")
    return seconds


def cmd_live(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if args.resume is not None:
        cfg = resumed_config(cfg, args.resume, strategy=args.strategy,
                             params=parse_assignments(args.param, "--param"),
                             market={key: getattr(args, key) for key in MARKET})
    opts = LiveOptions(
        symbol=cfg.run.symbol, category=cfg.run.category, interval=cfg.run.interval or "1m",
        ws_url=args.ws_url, rest_url=args.rest_url, duration_s=args.duration, record=args.record,
        resume=args.resume, ping_interval_s=args.ping_interval, pong_timeout_s=args.pong_timeout,
        stale_after_s=args.stale_after, forbidden_backoff_s=args.rest_ban_backoff,
    )
    try:
        kind = parse_interval(opts.interval).kind
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if kind != "time":
        raise ConfigError(f"live sessions use time bars, not {opts.interval}")
    result = run_live(cfg, opts)
    _emit_result(args, result)
    return 1 if result.status == "failed" else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="papertape",
        description="Event-driven paper trading and backtesting for Bybit.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"papertape {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("backtest", help="replay history through a strategy and the simulated broker",
                       description="Replay trade archives, klines or a recording through the "
                       "strategy, the simulated broker and the ledger, then print the metrics.")
    _run_args(p)
    p.set_defaults(func=cmd_backtest)

    p = sub.add_parser("bars", help="aggregate trade archives into bars (CSV)",
                       description="Aggregate trades into bars and write them as CSV with columns "
                       "open_time (ms UTC), open, high, low, close, volume, turnover, trades.")
    _config_args(p)
    p.add_argument("--data", nargs="+", required=True, metavar="PATH", help="trade archives or globs")
    p.add_argument("--interval", default=None, help="1m, 5m, 1h, 1d, <N>s, tick:N, volume:X, value:X")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="where to write the bars")
    p.add_argument("--start", help="first time (UTC)")
    p.add_argument("--end", help="end time, exclusive (UTC)")
    p.add_argument("--symbol", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bars)

    p = sub.add_parser("live", help="paper-trade on Bybit's live feed with the simulated broker",
                       description="Paper trading: Bybit's public websocket feed through the same "
                       "bars, strategy, simulated broker and ledger as a backtest. Ctrl-C or SIGTERM "
                       "stops cleanly (ledger flushed). Reconnects and backfills on its own.")
    _config_args(p)
    p.add_argument("--ws-url", default=MAINNET_WS, help=f"websocket base URL (default {MAINNET_WS}); "
                   "/v5/public/<category> is appended")
    p.add_argument("--rest-url", default=MAINNET_REST, help=f"REST base URL (default {MAINNET_REST})")
    p.add_argument("--symbol", help="symbol, e.g. BTCUSDT (default: [run] symbol)")
    p.add_argument("--category", choices=("linear", "spot"), help="market (default: [run] category)")
    p.add_argument("--interval", help="bar interval (default 1m)")
    p.add_argument("--duration", type=parse_duration, help="stop after this long, e.g. 30s, 2h "
                   "(default: run until Ctrl-C)")
    p.add_argument("--record", metavar="FILE.jsonl", help="record the raw feed; replay it later with "
                   "`papertape backtest --data FILE.jsonl`")
    p.add_argument("--resume", type=int, metavar="RUN_ID", help="continue a run from its ledger: "
                   "positions, cash, open orders and strategy state, with its strategy, parameters "
                   "and market")
    p.add_argument("--strategy", metavar="NAME", help="strategy name or module:Class")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="strategy parameter")
    p.add_argument("--seed", type=int, help="seed of the broker's random models")
    p.add_argument("--ledger", metavar="PATH", help="ledger file or URL (default papertape.db)")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.add_argument("--ping-interval", type=float, default=20.0, metavar="S", help="JSON ping every S s (20)")
    p.add_argument("--pong-timeout", type=float, default=10.0, metavar="S",
                   help="a pong later than S s means the connection is dead (10)")
    p.add_argument("--stale-after", type=float, default=30.0, metavar="S",
                   help="reconnect when no data arrives for S s (30)")
    p.add_argument("--rest-ban-backoff", type=float, default=600.0, metavar="S",
                   help="wait after an HTTP 403 from REST, as Bybit asks (600)")
    p.set_defaults(func=cmd_live, start=None, end=None)

    p = sub.add_parser("runs", help="list the runs in a ledger")
    p.add_argument("--ledger", default="papertape.db", metavar="PATH", help="ledger (default papertape.db)")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("report", help="metrics and an HTML report of a run",
                       description="Print a run's metrics (computed from the ledger) and write a "
                       "self-contained HTML report: equity, drawdown, price with fills, fills table.")
    p.add_argument("--ledger", default="papertape.db", metavar="PATH", help="ledger (default papertape.db)")
    p.add_argument("--run", type=int, help="run id (default: the newest run)")
    p.add_argument("--out", metavar="FILE.html", help="HTML file (default report-run<ID>.html)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_report)

    register_serve_exchange(sub)
    register_fetch(sub)
    for ep in sorted(entry_points(group="papertape.commands"), key=lambda e: e.name):
        try:
            ep.load()(sub)
        except ImportError as exc:
            log.debug("command %s unavailable: %s", ep.name, exc)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else logging.DEBUG if verbose > 1 else \
        logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"papertape: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("papertape: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
