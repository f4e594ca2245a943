"""``papertape live``: paper trading on Bybit's public websocket feed through the same bars,
strategy, simulated broker and ledger as a backtest."""

from __future__ import annotations

import argparse
import sys

from engine.bybit.endpoints import MAINNET_REST, MAINNET_WS
from engine.commands.run_options import add_config_args, print_result, resolve_config
from engine.core.typed import ConfigError, parse_assignments


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
    if not 0 < seconds < float("inf"):  # inf (1e400s) would run forever
        raise argparse.ArgumentTypeError(f"duration must be positive and finite, got {text!r}")
    return seconds


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("live", help="paper-trade on Bybit's live feed with the simulated broker",
                              description="Paper trading: Bybit's public websocket feed through the same "
                              "bars, strategy, simulated broker and ledger as a backtest. Ctrl-C or SIGTERM "
                              "stops cleanly (ledger flushed). Reconnects and backfills on its own.")
    add_config_args(p)
    p.add_argument("--ws-url", default=MAINNET_WS, help=f"websocket base URL (default {MAINNET_WS}), "
                   "to which /v5/public/<category> is appended, or the full endpoint "
                   "(wss://stream.bybit.com/v5/public/linear)")
    p.add_argument("--rest-url", default=MAINNET_REST, help=f"REST base URL (default {MAINNET_REST})")
    p.add_argument("--symbol", help="symbol, e.g. BTCUSDT (default: [run] symbol)")
    p.add_argument("--symbols", metavar="A,B,C", help="trade several symbols in one session, one "
                   "account (a portfolio): one websocket connection subscribes every symbol's topic")
    p.add_argument("--category", choices=("linear", "spot"), help="market (default: [run] category)")
    p.add_argument("--interval", help="bar interval (default 1m)")
    p.add_argument("--timeframes", metavar="5m,1h", help="higher timeframes folded from the run's "
                   "--interval bars: each symbol's bars of each go to the strategy's on_timeframe_bar")
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
    p.add_argument("--silent-after", type=parse_duration, default=1.0, metavar="S",
                   help="hold the bars and ask REST whether trades were missed (a stalled stream) "
                   "when no data arrives for S s (1)")
    p.add_argument("--rest-ban-backoff", type=float, default=600.0, metavar="S",
                   help="wait after an HTTP 403 from REST, as Bybit asks (600)")
    p.add_argument("--dashboard", nargs="?", const="127.0.0.1:8050", metavar="HOST:PORT",
                   help="serve the dashboard in this process, the live run's page updating in place "
                   "(default 127.0.0.1:8050; beyond loopback a token is generated and printed)")
    p.set_defaults(func=run, start=None, end=None)
    return p


def run(args: argparse.Namespace) -> int:
    from engine.bars.aggregator import parse_interval
    from engine.bybit.endpoints import public_ws_endpoint
    from engine.core.paths import check_writable
    from engine.run.live import LiveOptions, run_live
    from engine.run.resume import MARKET, resumed_config

    cfg = resolve_config(args)
    if args.resume is not None:
        cfg = resumed_config(cfg, args.resume, strategy=args.strategy,
                             params=parse_assignments(args.param, "--param", once=True),
                             market={key: getattr(args, key) for key in MARKET},
                             symbols=cfg.run.portfolio if args.symbols is not None else None,
                             timeframes=cfg.run.timeframes if args.timeframes is not None else None)
    mixed = [s for s in cfg.run.portfolio if ":" in s]
    if mixed:
        raise ConfigError(f"--symbols {','.join(mixed)}: live sessions trade one category (Bybit streams "
                          "spot and linear on separate websockets); mixing categories is for backtests")
    opts = LiveOptions(
        symbol=",".join(cfg.run.portfolio), category=cfg.run.category, interval=cfg.run.interval or "1m",
        ws_url=args.ws_url, rest_url=args.rest_url, duration_s=args.duration, record=args.record,
        resume=args.resume, ping_interval_s=args.ping_interval, pong_timeout_s=args.pong_timeout,
        stale_after_s=args.stale_after, silent_after_s=args.silent_after,
        forbidden_backoff_s=args.rest_ban_backoff, dashboard=args.dashboard,
    )
    try:
        kind = parse_interval(opts.interval).kind
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if kind != "time":
        raise ConfigError(f"live sessions use time bars, not {opts.interval}")
    try:
        public_ws_endpoint(opts.ws_url, opts.category)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if opts.dashboard:
        from engine.dashboard.live_server import parse_address
        parse_address(opts.dashboard)
    if opts.record:
        check_writable(opts.record, "--record")
    result = run_live(cfg, opts)
    print_result(args, result)
    if result.status == "failed":
        print(f"papertape: run {result.run_id} failed: {result.extra.get('error')}", file=sys.stderr)
        return 1
    return 0
