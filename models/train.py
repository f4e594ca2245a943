"""Training from bars: chronological or walk-forward splits, AdamW with cosine warm
restarts, gradient clipping, early stopping on validation loss, seeded, and held-out
metrics (directional accuracy, MSE/MAE or accuracy, information coefficient).

Splits are ranges of window-end rows (:mod:`models.splits`; steps of the shared time axis
when several symbols are pooled, :mod:`models.pooled`). Labels at row i use
``close[i + horizon]``, so ``horizon`` rows are dropped before every validation and test
range: no training label reaches into the period it is evaluated on. Normalisation is
fitted on the training windows only.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.allocator import return_freed_memory
from models.attention_options import OPTIONS, check_options
from models.budget import CHECKED_FROM, check_training, gib
from models.checkpoint import code_version
from models.dataset import Frames, Normalizer, run_model
from models.encoder import HEADS, EncoderConfig, SeriesEncoder
from models.features import FEATURE_VERSION, FEATURES, LOOKBACK
from models.pooled import Bars, DataError, pool_of
from models.splits import Fold, chronological_split
from models.targets import direction_classes, sharpe_loss
from models.timeframes import interval_ms


@dataclass
class TrainConfig:
    """Model, data and optimisation settings of one training run."""

    model: str = "full"
    seq_len: int = 64
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    head: str = "regression"
    horizon: int = 1
    threshold: float | None = None
    d_model: int = 64
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    attention_options: dict = field(default_factory=dict)
    features: tuple[str, ...] = FEATURES
    interval: str = "1h"
    timeframes: tuple[str, ...] = ()
    positional: str = "sinusoidal"
    reversible: bool | None = None
    ff_chunks: int | None = None
    val_frac: float = 0.15
    test_frac: float = 0.15
    patience: int = 5
    restart_epochs: int = 10
    grad_clip: float = 1.0
    checkpointing: bool = False  # recompute each layer in backward: less memory, more time
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def validate(self) -> None:
        """Refuse settings that cannot train, with one line naming the setting (ValueError),
        so a run fails before reading bars; ``engine.core.typed.build`` calls it for ``--train``."""
        if self.model not in OPTIONS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(OPTIONS)}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")
        for name in ("seq_len", "epochs", "batch_size", "horizon", "d_model", "layers", "heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        for name in ("lr", "grad_clip"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        for name in ("dropout", "val_frac", "test_frac"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 0 and below 1, got {getattr(self, name)!r}")
        if not self.val_frac + self.test_frac < 1:
            raise ValueError(f"val_frac {self.val_frac} and test_frac {self.test_frac} leave nothing to "
                             "train on; their sum must be below 1")
        for name in ("patience", "restart_epochs", "ff_chunks"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.threshold is not None and self.head != "classification":
            raise ValueError(f"threshold is for the classification head only, not {self.head}")
        if self.threshold is not None and not self.threshold >= 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold}")
        check_options(self.model, self.attention_options, self.seq_len * (len(self.timeframes) + 1))
        pick_device(self.device)

    def encoder_config(self, n_features: int) -> EncoderConfig:
        reformer = self.model == "reformer"
        return EncoderConfig(
            n_features=n_features, seq_len=self.seq_len, attention=self.model,
            attention_options=dict(self.attention_options), d_model=self.d_model,
            n_layers=self.layers, n_heads=self.heads, dropout=self.dropout,
            reversible=reformer if self.reversible is None else self.reversible,
            ff_chunks=(4 if reformer else 1) if self.ff_chunks is None else self.ff_chunks,
            positional=self.positional, n_timeframes=len(self.timeframes) + 1,
            head=self.head, horizon=self.horizon)


@dataclass
class TrainResult:
    model: SeriesEncoder
    meta: dict
    metrics: dict
    history: list[dict]


def pick_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else CPU; a device this machine lacks is refused
    (ValueError) rather than failing inside torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}; choose auto, cpu or cuda") from None
    if device.type == "cpu":
        return device
    backend = getattr(torch, device.type, None)
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        raise ValueError(f"device {name!r} is not available on this machine; use cpu or auto")
    count = getattr(backend, "device_count", None)
    if device.index is not None and count is not None and device.index >= count():
        raise ValueError(f"device {name!r}: this machine has {count()} {device.type} device(s)")
    return device


def _rank(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(np.float64)


def information_coefficient(signal: np.ndarray, returns: np.ndarray) -> float:
    """Spearman rank correlation between a signal and realised returns."""
    if len(signal) < 3 or np.std(signal) == 0 or np.std(returns) == 0:
        return 0.0
    return float(np.corrcoef(_rank(signal), _rank(returns))[0, 1])


def evaluate(head: str, pred: np.ndarray, returns: np.ndarray, threshold: float | None) -> dict:
    """Held-out metrics of predictions ``pred`` against forward returns ``[n, horizon]``."""
    r = returns[:, -1]
    moved = r != 0
    if head == "regression":
        signal = pred[:, -1]
        metrics = {"mse": float(np.mean((signal - r) ** 2)),
                   "mae": float(np.mean(np.abs(signal - r)))}
    elif head == "classification":
        probs = np.exp(pred - pred.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        signal = probs[:, 2] - probs[:, 0]
        labels = direction_classes(r, threshold)
        metrics = {"accuracy": float(np.mean(pred.argmax(axis=1) == labels))}
        moved &= pred.argmax(axis=1) != 1
    else:
        signal = pred[:, 0]
        pnl = signal * r
        metrics = {"sharpe": float(pnl.mean() / (pnl.std() + 1e-12)),
                   "mean_abs_position": float(np.abs(signal).mean())}
    agree = np.sign(signal[moved]) == np.sign(r[moved])
    metrics["directional_accuracy"] = float(agree.mean()) if agree.size else float("nan")
    metrics["ic"] = information_coefficient(signal, r)
    metrics["n"] = len(r)
    return metrics


def _loss(head: str, out: torch.Tensor, y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    if head == "regression":
        return F.mse_loss(out / scale, y / scale)
    if head == "classification":
        return F.cross_entropy(out, y)
    return sharpe_loss(out, y)


def _labels(head: str, returns: np.ndarray, threshold: float | None) -> torch.Tensor:
    if head == "regression":
        return torch.from_numpy(returns).float()
    if head == "classification":
        return torch.from_numpy(direction_classes(returns[:, -1], threshold)).long()
    return torch.from_numpy(returns[:, -1]).float()


EVAL_TOKENS = 512 * 64  # tokens of the windows evaluated at once: 512 windows at seq-len 64


def eval_batch(tokens: int) -> int:
    """Windows per evaluation batch: 512 up to 64 tokens, fewer for longer windows, so
    evaluation never needs more memory than 32,768 tokens' worth."""
    return max(1, min(512, EVAL_TOKENS // tokens))


def _predict(model, frames: Frames, ends: np.ndarray, seq_len: int) -> np.ndarray:
    """Eval-mode outputs for the windows ending at ``ends``, in batches of :func:`eval_batch`."""
    step = eval_batch(model.config.tokens)
    return np.concatenate([run_model(model, frames.windows(ends[i : i + step], seq_len))
                           for i in range(0, len(ends), step)])


def check_fits(cfg: TrainConfig, encoder: EncoderConfig) -> int:
    """The peak memory training ``cfg`` expects; refuses one that does not fit
    (:func:`models.budget.check_training`)."""
    return check_training(encoder, cfg.batch_size, eval_batch(encoder.tokens), cfg.checkpointing,
                          cfg.interval, interval_ms(cfg.interval) / 1000)


def _eval_loss(model, frames: Frames, ends, labels, cfg: TrainConfig) -> float:
    """Mean loss over ``ends`` in eval mode (validation)."""
    preds = torch.from_numpy(_predict(model, frames, ends, cfg.seq_len)).float()
    return _loss(cfg.head, preds, labels, model.target_scale.cpu()).item()


def check_every_symbol_trains(pool, cfg: TrainConfig) -> None:
    """Refuse a pool in which a symbol has no usable window at all (its files are too short
    at ``--interval``, e.g. minute bars beside hourly ones): the checkpoint would name a
    symbol it never saw."""
    if len(pool.symbols) < 2:
        return
    for index, symbol in enumerate(pool.symbols):
        rows = pool.series == index
        if not pool.valid[rows].any():
            raise DataError(
                f"{symbol}: its {int(rows.sum())} bars of {cfg.interval} give no usable window of seq-len "
                f"{cfg.seq_len} ({pool.feature_set.warmup} bars of feature warm-up, horizon {cfg.horizon}), "
                "so the model would never see it; give it more data or leave it out")


def train_model(bars: Bars, config: TrainConfig, fold: Fold | None = None,
                announce: Callable[[str], object] | None = None) -> TrainResult:
    """Train one model on ``bars`` (kline columns, time order; or a mapping of symbol to such
    bars, pooled by :mod:`models.pooled`, the split cutting every symbol at the same times)
    and evaluate it. Before training, ``announce`` is given the peak memory expected
    (:func:`check_fits`, which refuses a run that does not fit); without it, only windows of
    ``CHECKED_FROM`` tokens or more are checked (the count runs the model on fake tensors,
    up to a second). A ``fold`` indexes the pool's time axis (one symbol's bar rows)."""
    cfg = config
    cfg.validate()
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    encoder = cfg.encoder_config(len(cfg.features))
    need = check_fits(cfg, encoder) if announce is not None or encoder.tokens >= CHECKED_FROM else None
    if encoder.tokens >= CHECKED_FROM:
        return_freed_memory()  # else freed activations stay resident: the peak grew with depth
    pool = pool_of(bars, cfg)
    feature_set, frames, returns, valid = pool.feature_set, pool.frames, pool.returns, pool.valid
    check_every_symbol_trains(pool, cfg)
    fold_given = fold is not None
    if fold is None:
        fold = chronological_split(len(pool.times), cfg.val_frac, cfg.test_frac, cfg.horizon,
                                   pool.first_step)
    ends = pool.fold_ends(fold)
    if len(ends["train"]) < 2 * cfg.batch_size or not len(ends["validation"]):
        split = (f"{len(ends['train'])} of them to train on and {len(ends['validation'])} to "
                 "validate on" + (" in this fold (fewer folds give it more)" if fold_given else ""))
        raise DataError(
            f"too few bars: {pool.n_bars} bars give {int(valid.sum())} usable windows of "
            f"seq-len {cfg.seq_len} ({feature_set.warmup} bars of feature warm-up, horizon "
            f"{cfg.horizon}), {split}; training needs at least {2 * cfg.batch_size} "
            "(twice the batch size) plus validation")
    norm = Normalizer.fit_ends(frames, ends["train"], cfg.seq_len)
    frames = norm.transform(frames)
    threshold = cfg.threshold
    if cfg.head == "classification" and threshold is None:
        threshold = float(np.quantile(np.abs(returns[ends["train"], -1]), 1 / 3))
    labels = {k: _labels(cfg.head, returns[e], threshold) for k, e in ends.items()}

    if need is not None:
        say = announce or (lambda line: print(line, file=sys.stderr))
        say(f"train {cfg.model}: expects a peak of about {gib(need)} of memory ({encoder.tokens:,} "
            f"tokens, batch {cfg.batch_size}{', checkpointed' if cfg.checkpointing else ''})")
    model = SeriesEncoder(encoder)
    model.checkpointing = cfg.checkpointing
    if cfg.head == "regression":
        model.target_scale.copy_(torch.from_numpy(returns[ends["train"]].std(axis=0)).float())
    model.to(device)
    history = _fit(model, frames, ends, labels, cfg, device)

    metrics, by_symbol = {}, {}
    for name in ("validation", "test"):
        if len(ends[name]):
            preds = _predict(model, frames, ends[name], cfg.seq_len)
            metrics[name] = evaluate(cfg.head, preds, returns[ends[name]], threshold)
            for k, symbol in enumerate(pool.symbols if len(pool.symbols) > 1 else ()):
                mine = pool.series[ends[name]] == k
                if mine.any():
                    by_symbol.setdefault(symbol, {})[name] = evaluate(
                        cfg.head, preds[mine], returns[ends[name]][mine], threshold)
    meta = {
        "features": list(feature_set.names),
        "feature_lookback": {n: LOOKBACK[n] for n in feature_set.names},
        "feature_version": FEATURE_VERSION,
        "normalization": norm.to_dict(),
        "interval": cfg.interval,
        "timeframes": list(cfg.timeframes),
        "seq_len": cfg.seq_len,
        "head": cfg.head,
        "horizon": cfg.horizon,
        "threshold": threshold,
        "training_window": {k: pool.window_ms(e) for k, e in ends.items()},
        "metrics": metrics,
        "seed": cfg.seed,
        "code_version": code_version(),
    }
    if any(pool.symbols):
        meta["symbols"] = list(pool.symbols)
    if by_symbol:
        meta["metrics_by_symbol"] = by_symbol  # each symbol's held-out windows alone
    return TrainResult(model.cpu().eval(), meta, metrics, history)


def _fit(model, frames, ends, labels, cfg: TrainConfig, device) -> list[dict]:
    """The optimisation loop; leaves the best-validation weights in ``model``."""
    train_ends, y_train = ends["train"], labels["train"]
    steps = math.ceil(len(train_ends) / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        opt, T_0=max(1, cfg.restart_epochs * steps))
    rng = np.random.default_rng(cfg.seed)
    scale = model.target_scale
    best, best_state, stale, history = math.inf, None, 0, []
    bar = tqdm(range(cfg.epochs), desc=f"train {cfg.model}", file=sys.stderr,
               disable=not cfg.progress, leave=False)
    for epoch in bar:
        model.train()
        order = rng.permutation(len(train_ends))
        total = 0.0
        for step in range(steps):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x = torch.from_numpy(frames.windows(train_ends[idx], cfg.seq_len)).to(device)
            loss = _loss(cfg.head, model(x), y_train[idx].to(device), scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        val = _eval_loss(model, frames, ends["validation"], labels["validation"], cfg)
        history.append({"epoch": epoch + 1, "loss": total / len(train_ends), "val_loss": val})
        bar.set_postfix(loss=f"{total / len(train_ends):.4f}", val=f"{val:.4f}")
        if val < best - 1e-6:
            best, best_state, stale = val, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
