"""``papertape train``: fit an attention model on bars and write a checkpoint.

The engine CLI calls :func:`register` with its subparsers. Only the JSON result goes to
stdout with ``--json``; progress and logs go to stderr. Bad input gives one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.attention_options import kinds_taking

ATTENTION_FLAGS = ("k", "share_kv", "n_hashes", "bucket_size", "causal", "num_landmarks",
                   "pinv_iterations", "residual_conv")  # the attention options with a flag


def register(subparsers) -> None:
    """Add the ``train`` command to the engine's argparse subparsers."""
    p = subparsers.add_parser(
        "train", help="train an attention model on bars and write a checkpoint",
        description="Train a forecasting encoder (attention: full, linformer, reformer or "
                    "nystrom) on bars from trade archives, kline CSVs or a backtest ledger. "
                    "Splits are chronological (or walk-forward), normalisation is fitted on "
                    "the training window only, and held-out metrics are reported.")
    p.add_argument("--model", default="full", metavar="KIND",
                   help="attention: full, linformer, reformer or nystrom (default full)")
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="trade archives (.csv/.csv.gz), kline CSVs or a SQLite ledger; several "
                        "symbols' (archives name theirs, klines as SYMBOL=PATH) train one model "
                        "on all of them, split at the same times")
    p.add_argument("--interval", default="1h", help="bar interval (default 1h)")
    p.add_argument("--timeframes", default="", metavar="LIST",
                   help="coarser intervals fused into the input, e.g. 4h,1d (default none)")
    p.add_argument("--seq-len", type=int, default=64, help="bars per window (default 64)")
    p.add_argument("--epochs", type=int, default=20, help="maximum epochs (default 20)")
    p.add_argument("--out", default="model.pt", metavar="CKPT",
                   help="checkpoint path (default model.pt; walk-forward adds -foldK)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--head", default="regression", metavar="HEAD",
                   help="regression, classification or allocation (default regression)")
    p.add_argument("--horizon", type=int, default=1, help="bars ahead to forecast (default 1)")
    p.add_argument("--threshold", type=float, default=None,
                   help="classification: |return| counted as flat (default: train tercile)")
    p.add_argument("--d-model", type=int, default=64, help="model width (default 64)")
    p.add_argument("--layers", type=int, default=2, help="encoder layers (default 2)")
    p.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout (default 0.1)")
    p.add_argument("--positional", default="sinusoidal", help="sinusoidal or learned")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--patience", type=int, default=5, help="early-stopping epochs (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--walk-forward", type=int, default=0, metavar="N",
                   help="train N expanding-window folds instead of one split")
    p.add_argument("--features", default="", metavar="LIST",
                   help="comma-separated feature names (default all)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.add_argument("--checkpointing", action="store_true",
                   help="recompute each layer in the backward pass instead of storing its activations: "
                        "about a layer's activation memory instead of all of them, for a third more "
                        "time (reformer's reversible layers already do this)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("attention options")
    g.add_argument("--k", type=int,
                   help="linformer: projected length, at most the window's n tokens (default min(128, n))")
    g.add_argument("--share-kv", action="store_true", default=None, help="linformer: one projection for K, V")
    g.add_argument("--n-hashes", type=int, help="reformer: hash rounds (default 4)")
    g.add_argument("--bucket-size", type=int, help="reformer: bucket/chunk size (default 64)")
    g.add_argument("--causal", action="store_true", default=None, help="reformer: causal mask")
    g.add_argument("--num-landmarks", type=int, help="nystrom: landmarks (default 64)")
    g.add_argument("--pinv-iterations", type=int, help="nystrom: pseudo-inverse iterations (default 20)")
    g.add_argument("--no-residual-conv", dest="residual_conv", action="store_false",
                   default=None, help="nystrom: drop the depthwise conv on values")
    p.set_defaults(func=run)


def _attention_options(args: argparse.Namespace) -> dict:
    options = {}
    for name in ATTENTION_FLAGS:
        value = getattr(args, name, None)
        if value is None:
            continue
        kinds = kinds_taking(name)
        if args.model not in kinds:
            raise ValueError(f"--{name.replace('_', '-')} applies to {', '.join(kinds)} only")
        options[name] = value
    return options


def train_config(args: argparse.Namespace):
    """The :class:`TrainConfig` the arguments describe, checked by its ``validate``."""
    from models.features import FEATURES
    from models.timeframes import interval_ms
    from models.train import TrainConfig

    features = tuple(f for f in args.features.split(",") if f) or FEATURES
    timeframes = tuple(t for t in args.timeframes.split(",") if t)
    for tf in (args.interval, *timeframes):
        interval_ms(tf)
    config = TrainConfig(
        model=args.model, seq_len=args.seq_len, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, head=args.head, horizon=args.horizon, threshold=args.threshold,
        d_model=args.d_model, layers=args.layers, heads=args.heads, dropout=args.dropout,
        attention_options=_attention_options(args), features=features, interval=args.interval,
        timeframes=timeframes, positional=args.positional, patience=args.patience,
        seed=args.seed, device=args.device, progress=not args.no_progress,
        checkpointing=args.checkpointing)
    config.validate()
    return config


def train_frame(bars, args: argparse.Namespace) -> dict:
    """Train on a bars DataFrame (or bars per symbol) as ``args`` say, write the
    checkpoint(s), return the result."""
    from models.checkpoint import save_checkpoint
    from models.pooled import by_symbol, first_usable_row, time_steps
    from models.splits import walk_forward_folds
    from models.train import train_model

    config = train_config(args)
    out = Path(args.out)
    if args.walk_forward:
        folds = walk_forward_folds(time_steps(bars), args.walk_forward, gap=config.horizon,
                                   start=first_usable_row(bars, config))
        runs = [(out.with_name(f"{out.stem}-fold{k}{out.suffix}"), fold)
                for k, fold in enumerate(folds)]
    else:
        runs = [(out, None)]
    results = []
    for path, fold in runs:
        result = train_model(bars, config, fold, announce=lambda line: print(line, file=sys.stderr))
        save_checkpoint(path, result.model, result.meta)
        results.append({"checkpoint": str(path), "validation": result.metrics["validation"],
                        "test": result.metrics.get("test"),
                        "training_window": result.meta["training_window"],
                        "epochs": len(result.history)})
    summary = {
        "checkpoint": results[-1]["checkpoint"],
        "model": {"kind": config.model, "head": config.head, "horizon": config.horizon,
                  "seq_len": config.seq_len, "interval": config.interval,
                  "features": result.meta["features"],
                  "parameters": sum(p.numel() for p in result.model.parameters()),
                  "config": result.model.config.to_dict()},
        "validation": results[-1]["validation"],
        "test": results[-1]["test"],
        "training_window": results[-1]["training_window"],
        "epochs": results[-1]["epochs"],
        "bars": sum(len(b) for b in by_symbol(bars).values()),
    }
    if "symbols" in result.meta:
        summary["symbols"] = result.meta["symbols"]
        summary["by_symbol"] = result.meta.get("metrics_by_symbol", {})
    if args.walk_forward:
        summary["folds"] = results
    return summary


def run(args: argparse.Namespace) -> int:
    """Entry point of ``papertape train``; returns the exit code."""
    try:
        train_config(args)
        from models.checkpoint import check_writable

        check_writable(args.out)

        bars = load_training_bars(list(args.data), args.interval)
        summary = train_frame(bars, args)
    except (ValueError, OSError) as exc:
        print(f"papertape train: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary) if args.json else format_summary(summary))
    return 0


def load_training_bars(patterns: list[str], interval: str):
    """Bars of ``--data``: one frame for one symbol's files or a ledger; bars per symbol when
    the files hold several symbols (trade archives name theirs, ``fetch`` names its kline
    files) or name one with ``SYMBOL=``."""
    from engine.feeds.history.portfolio_sources import fetched_symbol, files_by_symbol
    from engine.feeds.history.sources import data_symbols, expand, file_kind, load_bars_from, split_symbol

    files = expand(patterns)
    kinds = {file_kind(p) for p in files}
    held = (data_symbols(patterns) if kinds == {"trades"} else
            {fetched_symbol(p) for p in files} - {None} if kinds == {"klines"} else set())
    if not any(split_symbol(p)[0] is not None for p in patterns) and len(held) < 2:
        return load_bars_from(patterns, interval)
    _, groups = files_by_symbol(patterns)
    return {symbol: load_bars_from([str(p) for p in paths], interval) for symbol, paths in groups.items()}


def format_summary(summary: dict) -> str:
    """The text report: each checkpoint written, with its validation and held-out test
    metrics (every fold's with ``--walk-forward``)."""
    model = summary["model"]
    lines = []
    for entry in summary.get("folds", [summary]):
        lines.append(f"wrote {entry['checkpoint']} ({model['kind']}, {model['parameters']} parameters)")
        for split in ("validation", "test"):
            metrics = entry[split]
            text = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()) if metrics else "no windows"
            lines.append(f"  {split:<10}  {text}")
    for symbol, metrics in summary.get("by_symbol", {}).items():
        for split, values in metrics.items():
            text = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            lines.append(f"  {symbol} {split}: {text}")
    return "\n".join(lines)
