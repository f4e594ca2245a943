"""``papertape bars``: aggregate trades into bars and write them as a kline CSV."""

from __future__ import annotations

import argparse
import json

from engine.commands.run_options import add_config_args, resolve_config


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bars", help="aggregate trade archives into bars (CSV)",
                              description="Aggregate trades into bars and write them as CSV with columns "
                              "open_time (ms UTC), open, high, low, close, volume, turnover, trades.")
    add_config_args(p)
    p.add_argument("--data", nargs="+", required=True, metavar="PATH", help="trade archives or globs")
    p.add_argument("--interval", default=None, help="1m, 5m, 1h, 1d, <N>s, tick:N, volume:X, value:X")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="where to write the bars")
    p.add_argument("--start", help="first time (UTC)")
    p.add_argument("--end", help="end time, exclusive (UTC)")
    p.add_argument("--symbol", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.bars.kline_files import write_kline_csv
    from engine.core.config import parse_time
    from engine.core.paths import check_writable
    from engine.feeds.history.sources import open_source, source_bars

    check_writable(args.out, "--out")
    cfg = resolve_config(args)
    interval = args.interval or cfg.run.interval or "1m"
    source = open_source(cfg.run.data, symbol=cfg.run.symbol, category=cfg.run.category,
                         interval=interval, start_ns=parse_time(cfg.run.start, "--start"),
                         end_ns=parse_time(cfg.run.end, "--end"))
    with tqdm(total=source.total_rows, unit="trades", unit_scale=True, leave=False,
              disable=None if not args.no_progress else True, desc="aggregate") as bar:
        frame = source_bars(source, interval, cfg.bars, progress=bar.update)
    write_kline_csv(frame, args.out)
    summary = {"out": str(args.out), "bars": len(frame), "interval": interval,
               "rows": source.total_rows, "bad_rows": source.bad_rows}
    print(json.dumps(summary) if args.json else
          f"wrote {len(frame):,} {interval} bars to {args.out} from {source.total_rows:,} rows")
    return 0
