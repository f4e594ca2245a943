"""``papertape sweep``: backtest a strategy over a search space on local worker processes
or a Ray cluster, every trial a run in the ledger, with the best trials, their
out-of-sample figures and the overfitting guard (DSR, PBO) at the end."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from engine.commands.run_options import add_run_args, resolve_config
from engine.core.typed import ConfigError

MAX_WORKERS_PER_CPU = 8
MAX_TRIALS = 100_000  # trials of one sweep (each reserves a run row up front, a round at a time)
MAX_GRID_POINTS = 1_000_000  # points --sampler random shuffles to draw distinct ones

EXAMPLES = """\
examples:
  papertape sweep --grid fast=5,10,20 --grid slow=20:60:10 --workers 2
  papertape sweep --grid fast=5:60:5 --grid slow=20:200:10 --sampler tpe --trials 50 --seed 7
  papertape sweep --grid fast=5:30:5 --grid slow=40,80 --holdout 0.3 --constraint fast<slow
  papertape sweep --grid fast=5,10 --grid slow=20,40 --ray 127.0.0.1:6379 --json
  papertape sweep --strategy model --interval 5m --grid train.lr=0.001,0.003 --grid threshold=0,0.0005 \\
      --train model=linformer --train epochs=5 --holdout 0.3    each trial trains its own model
  papertape sweep --resume 3                    run what sweep 3 has not run yet
  papertape report --sweep 3 --out sweep.html
"""


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sweep", help="backtest a strategy over a parameter space (local workers or Ray)",
        description="Run a backtest for every point of a search space (or for the trials a random or "
        "TPE sampler picks). Every trial is an ordinary run in the ledger, grouped under a sweep id; "
        "the data is parsed once per worker. At the end: the best trials, and how much of the best "
        "result may be luck (Deflated Sharpe Ratio, Probability of Backtest Overfitting).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=SPEC",
                   help="a swept parameter: values v1,v2,...; a range start:stop:step (ends included); "
                        "or a span lo~hi (lo~hi:log) for --sampler random/tpe (repeatable; also the "
                        "[sweep.space] table)")
    p.add_argument("--sampler", choices=("grid", "random", "tpe"),
                   help="grid: every point (default when every key lists values); random: seeded draws; "
                        "tpe: Optuna's TPE, seeded")
    p.add_argument("--trials", type=int, metavar="N", help="how many trials random and tpe run")
    p.add_argument("--batch", type=int, metavar="N", help="TPE asks N trials per round (default 8); "
                   "the trials depend on the seed and this, not on the workers")
    p.add_argument("--objective", metavar="METRIC", help="what to maximise (default sharpe; drawdown, "
                   "volatility, fees and turnover are minimised); daily.sharpe uses daily returns")
    p.add_argument("--min-trades", type=int, metavar="N", help="discard trials with fewer round trips")
    p.add_argument("--constraint", action="append", default=[], metavar="EXPR",
                   help="discard trials that break it: fast<slow, max_drawdown<=0.2 (repeatable)")
    p.add_argument("--holdout", type=float, metavar="F", help="keep the last F of the data out of the "
                   "search and trade the best trials on it (e.g. 0.3)")
    p.add_argument("--walk-forward", type=int, metavar="K", help="re-optimise on K growing windows, "
                   "each winner trading the block after its window")
    p.add_argument("--top", type=int, metavar="N", help="how many best trials the holdout tests and the "
                   "table shows (default 5)")
    p.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: one per CPU)")
    p.add_argument("--ray", metavar="ADDRESS", help="run the trials as Ray tasks on a running cluster: "
                   "auto, or host:port of `ray start --head`")
    p.add_argument("--keep-bars", action="store_true",
                   help="record every trial's per-bar equity rows with its bars, so `report --run` of a "
                   "trial draws its price chart (slower: by default a trial keeps its fills, orders and "
                   "packed equity curve, which is all its metrics read)")
    p.add_argument("--train", action="append", default=[], metavar="KEY=VALUE",
                   help="--strategy model: a training setting of every trial, as papertape train's "
                        "(model=linformer, seq_len=32, epochs=5, attention.k=32); sweep one with "
                        "--grid train.KEY=... Each trial trains on its own training window (the "
                        "search's window, never the held-out part) unless --param checkpoint is given")
    p.add_argument("--checkpoints", metavar="DIR", help="where trained checkpoints are cached, shared by "
                   "trials with the same settings and window (default: beside the ledger, L.db.checkpoints)")
    p.add_argument("--resume", type=int, metavar="SWEEP_ID", help="run only the trials sweep SWEEP_ID "
                   "has not recorded (its search space and options come from the ledger)")
    p.set_defaults(func=run)
    return p


def options_from(args: argparse.Namespace, cfg):
    """The sweep's options from flags over the config's [sweep] table."""
    from engine.analysis.sweep_stats import check_objective
    from engine.core.typed import parse_assignments
    from engine.run.sweep import SweepOptions
    from engine.run.sweep_space import flat_table, parse_constraint, parse_space
    from engine.run.sweep_training import setting

    table = cfg.sweep
    space = parse_space(args.grid, table.space)
    folder = args.checkpoints or table.checkpoints
    sampler = args.sampler or table.sampler or ("grid" if space.discrete else "random")
    holdout = args.holdout if args.holdout is not None else table.holdout
    walk = args.walk_forward if args.walk_forward is not None else table.walk_forward
    if holdout is not None and not 0 < holdout < 1:
        raise ConfigError(f"--holdout {holdout}: give the share of the data to keep out, between 0 and 1")
    if walk is not None and walk < 1:
        raise ConfigError(f"--walk-forward {walk}: give a number of folds, 1 or more")
    if holdout and walk:
        raise ConfigError("--holdout and --walk-forward each keep data out of the search; give one")
    batch = args.batch if args.batch is not None else table.batch
    top = args.top if args.top is not None else table.top
    if batch < 1 or top < 1:
        raise ConfigError("--batch and --top must be positive")
    min_trades = args.min_trades if args.min_trades is not None else table.min_trades
    if min_trades < 0:
        raise ConfigError(f"--min-trades {min_trades}: give 0 or more round trips")
    constraints = tuple(parse_constraint(c) for c in [*table.constraints, *args.constraint])
    check_constraints(constraints, space.names)
    parse_assignments(args.train, "--train", once=True)
    seed = args.seed if args.seed is not None else (table.seed if table.seed is not None else cfg.run.seed)
    return SweepOptions(
        space=space, grid=tuple(args.grid), table=dict(table.space), sampler=sampler,
        trials=args.trials if args.trials is not None else table.trials, seed=seed, batch=batch,
        objective=check_objective(args.objective or table.objective),
        min_trades=min_trades, constraints=constraints,
        holdout=holdout, walk_forward=walk, top=top, keep_bars=args.keep_bars,
        train=(*(f"{k}={setting(v)}" for k, v in flat_table(table.train)), *args.train),
        checkpoints=str(Path(folder).resolve()) if folder else None)


def check_constraints(constraints, swept: tuple[str, ...]) -> None:
    """Refuse a constraint naming neither a swept parameter nor a metric: it would never
    hold or break, so it would discard nothing without a word (``fast<<slow`` names
    ``<slow``; a parameter fixed with ``--param`` is no trial's own)."""
    from engine.analysis.sweep_stats import check_objective

    for c in constraints:
        for name in sorted(c.names()):
            if name in swept:
                continue
            try:
                check_objective(name)
            except ConfigError:
                raise ConfigError(f"--constraint {c.text}: {name!r} is neither a swept parameter "
                                  f"({', '.join(swept)}) nor a metric (sharpe, max_drawdown, n_trades, "
                                  "daily.sharpe, ...)") from None


def pool_size(args: argparse.Namespace, cfg) -> int:
    """The local workers asked for (``--workers``, ``[sweep] workers``, else one per CPU):
    at least 1 and at most ``MAX_WORKERS_PER_CPU`` per CPU, since each is a process that
    holds the data."""

    workers = args.workers if args.workers is not None else (cfg.sweep.workers or os.cpu_count() or 1)
    if args.ray:
        if args.workers is not None:
            raise ConfigError("--ray runs the trials on the cluster's CPUs; leave out --workers")
        return workers
    most = MAX_WORKERS_PER_CPU * (os.cpu_count() or 1)
    if not 1 <= workers <= most:
        raise ConfigError(f"--workers {workers}: give 1 to {most} ({MAX_WORKERS_PER_CPU} per CPU of "
                          f"this machine's {os.cpu_count() or 1}; each worker is a process)")
    return workers


def make_pool(args: argparse.Namespace, cfg):
    workers = pool_size(args, cfg)
    if args.ray:
        from engine.run.sweep_ray import RayPool

        return RayPool(args.ray)
    from engine.run.sweep_pool import LocalPool

    return LocalPool(workers)


def check_sweep(args: argparse.Namespace, cfg, opts) -> None:
    """Everything a sweep can refuse before it touches the ledger: the space against the
    strategy, the training settings and the checkpoint folder, the sampler's budget, the data
    and the higher timeframes (against its interval and the strategy)."""
    from engine.bars.aggregator import parse_interval
    from engine.bars.timeframes import check_timeframes
    from engine.core import plugins
    from engine.core.typed import parse_assignments
    from engine.run.backtest import open_run_source
    from engine.run.sweep import typed_params
    from engine.run.sweep_samplers import make_sampler
    from engine.run.sweep_training import plan_training
    from engine.strategy.host import check_takes_timeframes

    fixed = tuple(parse_assignments(args.param, "--param", once=True)) if args.resume is None else ()
    hints = typed_params(cfg.strategy.name, opts.space, fixed)
    for d in opts.space.dimensions:
        if d.sampled and hints.get(d.name) is int and not d.integer:
            raise ConfigError(f"--grid {d.name}={d.low!r}~{d.high!r}: {d.name} is a whole number; give the "
                              "span whole-number ends (e.g. 2~30)")
    plan_training(cfg, opts.space, parse_assignments(list(opts.train), "--train"), opts.checkpoints)
    size = opts.space.size
    if opts.sampler == "grid" and size is not None and size > MAX_TRIALS:
        raise ConfigError(f"the grid has {size:,} points, more than the {MAX_TRIALS:,} trials a sweep runs; "
                          "sample it with --sampler random or tpe and --trials N")
    if opts.sampler == "random" and size is not None and size > MAX_GRID_POINTS:
        raise ConfigError(f"the grid has {size:,} points, more than the {MAX_GRID_POINTS:,} --sampler random "
                          "draws from; give spans (lo~hi) instead of lists")
    if opts.trials is not None and opts.trials > MAX_TRIALS:
        raise ConfigError(f"--trials {opts.trials:,}: a sweep runs at most {MAX_TRIALS:,}")
    make_sampler(opts.sampler, opts.space, opts.trials, opts.seed)  # a bad budget fails here
    source = open_run_source(cfg.run)  # data the trials cannot replay is the command's error, not each's
    interval = source.label if source.kind == "bars" else (cfg.run.interval or "1m")
    labels = tuple(s.label for s in check_timeframes(cfg.run.timeframes, parse_interval(interval)))
    check_takes_timeframes(plugins.load("papertape.strategies", cfg.strategy.name, "strategy"),
                           cfg.strategy.name, labels)  # as each trial's Session would refuse them


def run(args: argparse.Namespace) -> int:
    from engine.ledger.store import Ledger
    from engine.ledger.sweeps import set_sweep_status
    from engine.run.sweep import StopOnSigint, SweepInterrupted, SweepRun
    from engine.run.sweep_phases import resumed, run_phases, start_sweep, summarise

    cfg = resolve_config(args)
    if args.resume is None:
        opts, done = options_from(args, cfg), []
        check_sweep(args, cfg, opts)
    elif "://" not in cfg.ledger.path and not Path(cfg.ledger.path).expanduser().is_file():
        raise ConfigError(f"--resume {args.resume}: no sweep {args.resume}, since there is no ledger at "
                          f"{cfg.ledger.path}")
    with StopOnSigint() as stop:
        pool = make_pool(args, cfg)  # a cluster that does not answer is refused before the ledger opens
        try:
            ledger = Ledger(cfg.ledger.path, cfg.ledger.batch_rows, cfg.ledger.flush_seconds)
        except BaseException:
            pool.close()
            raise
        sweep_id = None
        try:
            sweep = None
            try:
                if args.resume is not None:
                    cfg, opts, done = resumed(ledger, args.resume)
                    sweep_id = args.resume
                    check_sweep(args, cfg, opts)
                    set_sweep_status(ledger.engine, sweep_id, "running")
                if stop.requested and sweep_id is None:  # Ctrl-C before anything was recorded
                    raise KeyboardInterrupt
                if sweep_id is None:
                    sweep_id = start_sweep(cfg, opts, ledger)
                sweep = SweepRun(cfg, opts, pool, ledger, sweep_id, done, not args.no_progress, stop)
                try:
                    outcome, status = run_phases(sweep), "finished"
                except SweepInterrupted:
                    outcome, status = {"best": None}, "interrupted"
            finally:
                pool.close()
                if sweep is not None:
                    sweep.abandon()
            result = summarise(sweep, outcome, status, pool.description)
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once, but never leave the sweep running
            if sweep_id is not None:
                set_sweep_status(ledger.engine, sweep_id, "interrupted")
            raise
        except Exception:  # nor after an error: the finished trials are kept, --resume runs the rest
            if sweep_id is not None:
                set_sweep_status(ledger.engine, sweep_id, "failed")
            raise
        finally:
            ledger.close()
    if status == "interrupted":
        where = cfg.ledger.path
        print(f"papertape: sweep {sweep_id} interrupted; {len(result.trials)} finished trial(s) kept in "
              f"{where}; `papertape sweep --resume {sweep_id} --ledger {where}` runs the rest",
              file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(), default=str))
    else:
        from engine.analysis.sweep_report import format_sweep

        print(format_sweep(result, top=opts.top))
    return 130 if status == "interrupted" else 0
