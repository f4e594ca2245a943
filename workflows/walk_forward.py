"""``papertape backtest --strategy model --walk-forward N``: train a model per fold on an
expanding window, let each trade only the block after its training data, and report the
metrics of every fold and overall.

The bars of the run are cut into ``N + 1`` blocks after the feature warm-up
(:func:`models.train.walk_forward_folds`); fold k trains on blocks ``0..k`` (the last 20%
as validation, ``horizon`` bars dropped before it, so no label reaches into the next
block) and trades block ``k + 1``. The folds run as one backtest: the strategy gets every
fold's checkpoint and each takes over at the start of its own test block, which is where
its training data ends, so no fold trades a period its model saw; positions carry over
from fold to fold as they would when a live model is replaced. Metrics per fold come from
the ledger rows of its block; ``directional_accuracy`` is the share of the fold's
forecasts whose sign matched the realised return over the model's horizon.

Training settings are ``papertape train``'s, as ``--train key=value`` (``model``,
``seq_len``, ``epochs``, ``d_model``, ``layers``, ``head``, ``horizon``, ``features``, ...;
``attention.k=32`` and the like for attention options); the interval is the run's.

A portfolio (``--symbols A,B``) trains each fold on every symbol's bars, pooled
(:mod:`models.pooled`), and cuts the blocks on the symbols' shared time axis: one set of
fold boundaries, in time, for all of them; the hit rate counts every symbol's forecasts.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.analysis.metrics import compute_metrics
from engine.analysis.report import format_metrics
from engine.bars.aggregator import parse_interval
from engine.core.clock import NS_PER_MS
from engine.core.config import Config
from engine.core.typed import ConfigError
from engine.ledger.reader import LedgerReader
from engine.run.backtest import run_backtest
from strategies.model_training import run_bars, train_config


def run_walk_forward(cfg: Config, n_folds: int, settings: dict[str, str], out_dir: Path, *,
                     progress: bool = True) -> dict[str, Any]:
    """Train the folds, backtest them as one run, and return the run's result with a
    ``walk_forward`` section: per-fold windows and metrics, and overall metrics."""
    from models.checkpoint import save_checkpoint
    from models.pooled import first_usable_row, time_steps
    from models.splits import walk_forward_folds
    from models.train import train_model
    from strategies.model import load_runners

    by_symbol, interval = run_bars(cfg)
    bars = next(iter(by_symbol.values())) if len(by_symbol) == 1 else by_symbol  # one symbol: a frame
    tc = train_config(settings, interval, progress)
    folder = None
    try:
        folds = walk_forward_folds(time_steps(bars), n_folds, gap=tc.horizon,
                                   start=first_usable_row(bars, tc))
        folder = _new_folder(out_dir)
        trained = []
        for k, fold in enumerate(folds):
            result = train_model(bars, tc, fold)
            path = folder / f"fold{k}.pt"
            save_checkpoint(path, result.model, result.meta)
            trained.append((str(path), result))
    except ValueError as exc:  # too few bars for the folds, bad settings
        if folder is not None and not any(folder.iterdir()):
            folder.rmdir()  # the run's own folder, still empty
        raise ConfigError(f"walk-forward: {exc}") from None
    runners, _ = load_runners(trained[0][0], in_sample=False)
    open_ms = np.unique(np.concatenate([b["open_time"].to_numpy(np.int64) for b in by_symbol.values()]))
    first = folds[0].test.start
    replay_from = first - runners[0].warmup_bars if not tc.timeframes else 0
    params = {**cfg.strategy.params, "checkpoint": ",".join(path for path, _ in trained)}
    run_cfg = dataclasses.replace(
        cfg, run=dataclasses.replace(cfg.run, start=str(int(open_ms[max(replay_from, 0)]))),
        strategy=dataclasses.replace(cfg.strategy, params=params))
    result = run_backtest(run_cfg, progress=progress)
    bounds = [int(open_ms[f.test.start]) * NS_PER_MS for f in folds]
    step_ns = int(parse_interval(interval).size)
    bounds.append(int(open_ms[-1]) * NS_PER_MS + step_ns)
    fold_rows = [{"fold": k, "checkpoint": path, "bars": len(fold.test),
                  **{name: r.meta["training_window"][name] for name in ("train", "validation")},
                  "test": [bounds[k] // NS_PER_MS, bounds[k + 1] // NS_PER_MS],
                  "model_metrics": r.metrics.get("validation")}
                 for k, ((path, r), fold) in enumerate(zip(trained, folds, strict=True))]
    reader = LedgerReader(result.ledger)
    try:
        sections = _period_metrics(reader, result.run_id, bounds, by_symbol, runners[0], step_ns, interval,
                                   cfg.account.cash)
    finally:
        reader.close()
    for row, metrics in zip(fold_rows, sections[:-1], strict=True):
        row.update(metrics)
    return result.to_json() | {"walk_forward": {"folds": fold_rows, "overall": sections[-1],
                                                "checkpoints": str(folder)}}


def _new_folder(parent: Path) -> Path:
    """A new folder in ``parent`` named after the UTC time (absolute), so that a later run
    never overwrites the checkpoints an earlier run's ledger names."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in itertools.count(1):
        folder = (parent / (stamp if n == 1 else f"{stamp}-{n}")).resolve()
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            continue
        return folder


def _period_metrics(reader: LedgerReader, run_id: int, bounds: list[int], bars: dict[str, pd.DataFrame],
                    runner, step_ns: int, interval: str, cash: float) -> list[dict[str, Any]]:
    """Metrics and directional accuracy of every period ``[bounds[k], bounds[k + 1])`` and,
    last, of ``[bounds[0], bounds[-1])``."""
    equity = reader.equity([run_id], "ts, equity, position")
    fills = reader.fills([run_id], "qty, price, fee, realized_pnl, position, symbol, ts_event")
    funding = reader.funding([run_id], "payment, ts_event")
    predictions = reader.table("predictions", [run_id], "ts_event, id", "symbol, ts_event, \"values\"")
    out = []
    for start, end in [*zip(bounds[:-1], bounds[1:], strict=True), (bounds[0], bounds[-1])]:
        before = equity[equity.ts <= start]
        out.append({"metrics": compute_metrics(
            equity[(equity.ts > start) & (equity.ts <= end)],
            fills[(fills.ts_event >= start) & (fills.ts_event < end)],
            funding[(funding.ts_event >= start) & (funding.ts_event < end)],
            initial_cash=float(before.equity.iloc[-1]) if len(before) else cash,
            interval=interval, start_ns=start),
            **_accuracy(predictions[(predictions.ts_event > start) & (predictions.ts_event <= end)],
                        bars, step_ns, runner.head, runner.horizon)})
    return out


def _accuracy(predictions: pd.DataFrame, bars: dict[str, pd.DataFrame], step_ns: int, head: str,
              horizon: int) -> dict[str, Any]:
    """Share of forecasts whose sign (up minus down for classification) matched the return
    of their symbol over the next ``horizon`` bars."""
    hits = []
    for symbol, frame in bars.items():
        close = frame["close"].to_numpy(np.float64)
        closes_at = dict(zip((frame["open_time"].to_numpy(np.int64) * NS_PER_MS + step_ns).tolist(),
                             range(len(frame)), strict=True))
        mine = predictions[predictions.symbol == symbol]
        for ts, values in zip(mine.ts_event.tolist(), mine["values"].tolist(), strict=True):
            row = closes_at.get(ts)
            if row is None or row + horizon >= len(close):
                continue
            values = json.loads(values)
            view = values[2] - values[0] if head == "classification" else values[-1]
            moved = np.sign(close[row + horizon] - close[row])
            if view != 0 and moved != 0:
                hits.append(np.sign(view) == moved)
    return {"predictions": len(hits),
            "directional_accuracy": float(np.mean(hits)) if hits else None}


def format_folds(section: dict[str, Any]) -> str:
    """The per-fold lines and the overall metrics table."""
    lines = ["fold  test period (UTC)                    bars  trades   return   sharpe  hit rate"]
    for f in section["folds"]:
        m = f["metrics"]
        start, end = (pd.Timestamp(t, unit="ms").strftime("%Y-%m-%d %H:%M") for t in f["test"])
        hit = f["directional_accuracy"]
        sharpe = "-" if m["sharpe"] is None else f"{m['sharpe']:.2f}"
        lines.append(f"{f['fold']:>4}  {start} .. {end}  {f['bars']:>5}  {m['n_trades']:>6}  "
                     f"{m['total_return']:>+7.2%}  {sharpe:>7}  "
                     + ("-" if hit is None else f"{hit:.1%}"))
    overall = section["overall"]
    lines.append(format_metrics(overall["metrics"], "walk-forward overall: hit rate "
                                + ("-" if overall["directional_accuracy"] is None
                                   else f"{overall['directional_accuracy']:.1%}")
                                + f" over {overall['predictions']} forecasts"))
    return "\n".join(lines)
