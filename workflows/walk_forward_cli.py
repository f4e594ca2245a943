"""``papertape backtest --strategy model --walk-forward N``: the flags it adds to the engine's
``backtest`` verb (a ``papertape.commands`` plugin) and the command that runs it with
:mod:`workflows.walk_forward`, imported only when it runs."""

from __future__ import annotations

import argparse
import json
import sys

from engine.core import plugins
from engine.core.paths import check_folder
from engine.core.typed import ConfigError, parse_assignments


def register(subparsers) -> None:
    """Give the engine's ``backtest`` command ``--walk-forward``, ``--train`` and
    ``--checkpoints`` (a ``papertape.commands`` plugin, as ``train`` is)."""
    backtest = subparsers.choices["backtest"]
    group = backtest.add_argument_group("walk-forward (strategy model)")
    group.add_argument("--walk-forward", type=int, metavar="N",
                       help="train N folds on expanding windows, each trading the block after its data")
    group.add_argument("--train", action="append", default=[], metavar="KEY=VALUE",
                       help="training setting of every fold, as papertape train's (model=linformer, "
                            "seq_len=32, epochs=5, attention.k=32, ...)")
    group.add_argument("--checkpoints", default="walk-forward", metavar="DIR",
                       help="where the fold checkpoints are written, in a new folder per run named "
                            "after its UTC start (default ./walk-forward)")
    plain = backtest.get_default("func")
    backtest.set_defaults(
        func=lambda args: plain(args) if args.walk_forward is None else cmd_walk_forward(args))


def cmd_walk_forward(args: argparse.Namespace) -> int:
    from engine.commands.run_options import resolve_config
    from engine.run.backtest import RunFailed
    from strategies.model import ModelStrategy
    from workflows.walk_forward import format_folds, run_walk_forward

    cfg = resolve_config(args)
    cls = plugins.load_strategy_class(cfg.strategy.name)
    if not (isinstance(cls, type) and issubclass(cls, ModelStrategy)):
        raise ConfigError(f"--walk-forward trains models for --strategy model, not {cfg.strategy.name}")
    if args.walk_forward < 1:
        raise ConfigError(f"--walk-forward takes a number of folds, at least 1, got {args.walk_forward}")
    if "checkpoint" in cfg.strategy.params:
        raise ConfigError("--walk-forward trains its own checkpoints: leave out --param checkpoint")
    checkpoints = check_folder(args.checkpoints, "--checkpoints")
    try:
        train = parse_assignments(args.train, "--train", once=True)
        summary = run_walk_forward(cfg, args.walk_forward, train, checkpoints,
                                   progress=not args.no_progress)
    except RunFailed as exc:
        if args.json:
            print(json.dumps(exc.result.to_json(), default=str))
        print(f"papertape: run {exc.result.run_id} failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        folder = summary["walk_forward"]["checkpoints"]
        print(f"run {summary['run_id']} ({summary['status']}) in {summary['ledger']}: {summary['bars']:,} "
              f"bars, {summary['fills']:,} fills; fold checkpoints in {folder}")
        print(format_folds(summary["walk_forward"]))
    return 0
