"""Training targets and losses. Labels look forward by design (row i uses
``close[i + 1 .. i + horizon]``); features never do."""

from __future__ import annotations

import numpy as np
import torch

CLASSES = ("down", "flat", "up")


def forward_log_returns(close: np.ndarray, horizon: int) -> np.ndarray:
    """``[rows, horizon]``: column s is ``log(close[i + s + 1] / close[i])``; NaN past the end."""
    log_c = np.log(np.asarray(close, dtype=np.float64))
    out = np.full((len(log_c), horizon), np.nan)
    for s in range(1, min(horizon, len(log_c)) + 1):  # steps past the end stay NaN
        out[: len(log_c) - s, s - 1] = log_c[s:] - log_c[:-s]
    return out


def direction_classes(returns: np.ndarray, threshold: float) -> np.ndarray:
    """0 down (r < -threshold), 1 flat, 2 up (r > threshold)."""
    return np.where(returns > threshold, 2, np.where(returns < -threshold, 0, 1))


def sharpe_loss(position: torch.Tensor, returns: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Negative Sharpe ratio of ``position * returns`` over the batch (differentiable)."""
    pnl = position.flatten() * returns.flatten()
    return -pnl.mean() / (pnl.std() + eps)
