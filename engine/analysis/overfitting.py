"""How much of a sweep's best result is luck: the Deflated Sharpe Ratio and the Probability
of Backtest Overfitting.

DSR (Bailey and López de Prado, 2014) is the probability that the best trial's true Sharpe
ratio is above zero once the estimate is corrected for the number of trials tried (the
expected maximum Sharpe of that many skill-less trials is the benchmark) and for the skew
and kurtosis of its returns. PBO (Bailey, Borwein, López de Prado and Zhu, 2015) comes from
combinatorially symmetric cross-validation (CSCV): the returns of every trial are cut into
S blocks, every half of the blocks in turn picks the in-sample best trial, and PBO is the
share of those choices that rank at or below the median of the other half. Sharpe ratios
here are per period (not annualised), as the formulas need.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


@dataclass(frozen=True)
class DeflatedSharpe:
    """The DSR of one trial and the figures it is computed from."""

    dsr: float               # probability that the true Sharpe exceeds the benchmark
    sharpe: float            # per-period Sharpe of the trial's returns
    benchmark: float         # expected maximum Sharpe of n_trials skill-less trials
    n_trials: int
    n_returns: int
    skew: float
    kurtosis: float          # not excess: 3 for normal returns
    trials_sharpe_std: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Overfitting:
    """PBO by CSCV: the probability, the logit of each split, and how it was cut."""

    pbo: float
    logits: list[float]
    n_splits: int
    n_blocks: int
    rows_per_block: int
    n_trials: int

    def to_json(self) -> dict:
        return asdict(self)


def sharpe(returns: np.ndarray) -> float:
    """Per-period Sharpe ratio (mean over sample standard deviation); 0 for a flat series."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return 0.0
    std = float(r.std(ddof=1))
    return float(r.mean()) / std if std > 0 else 0.0


def moments(returns: np.ndarray) -> tuple[float, float]:
    """Skewness and (non-excess) kurtosis of a series, population estimates as in the paper;
    a flat series counts as normal (0, 3)."""
    r = np.asarray(returns, dtype=np.float64)
    dev = r - r.mean()
    var = float(np.mean(dev**2))
    if len(r) < 2 or var <= 0:
        return 0.0, 3.0
    return float(np.mean(dev**3)) / var**1.5, float(np.mean(dev**4)) / var**2


def probabilistic_sharpe(sr: float, benchmark: float, n_returns: int, skew: float, kurtosis: float) -> float:
    """PSR: the probability that the true per-period Sharpe exceeds ``benchmark``, given an
    estimate ``sr`` from ``n_returns`` returns with this skew and kurtosis."""
    if n_returns < 2:
        return float("nan")
    spread = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if spread <= 0:
        return float("nan")
    return _NORMAL.cdf((sr - benchmark) * math.sqrt(n_returns - 1) / math.sqrt(spread))


def expected_max_sharpe(n_trials: int, sharpe_std: float) -> float:
    """The expected largest Sharpe estimate among ``n_trials`` trials without skill whose
    estimates spread with standard deviation ``sharpe_std`` (the paper's SR_0)."""
    if n_trials < 2:
        return 0.0
    first = _NORMAL.inv_cdf(1.0 - 1.0 / n_trials)
    second = _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return sharpe_std * ((1.0 - EULER_GAMMA) * first + EULER_GAMMA * second)


def deflated_sharpe(returns: np.ndarray, trial_sharpes: list[float] | np.ndarray) -> DeflatedSharpe:
    """The DSR of the trial with these per-period ``returns``, chosen as the best of trials
    whose per-period Sharpe ratios are ``trial_sharpes`` (its own included)."""
    r = np.asarray(returns, dtype=np.float64)
    srs = np.asarray(trial_sharpes, dtype=np.float64)
    spread = float(srs.std(ddof=1)) if len(srs) > 1 else 0.0
    sr = sharpe(r)
    skew, kurt = moments(r)
    benchmark = expected_max_sharpe(len(srs), spread)
    return DeflatedSharpe(
        dsr=probabilistic_sharpe(sr, benchmark, len(r), skew, kurt), sharpe=sr, benchmark=benchmark,
        n_trials=int(len(srs)), n_returns=int(len(r)), skew=skew, kurtosis=kurt, trials_sharpe_std=spread,
    )


def probability_of_overfitting(returns: np.ndarray, n_blocks: int = 16) -> Overfitting:
    """PBO by CSCV of a ``[periods, trials]`` matrix of per-period returns, cut into
    ``n_blocks`` (even) blocks of equal length; rows past the last whole block are left out.

    For each of the C(S, S/2) halves: the in-sample best trial (highest Sharpe on the half,
    the first on a tie) gets its out-of-sample Sharpe ranked among all trials (ties share
    the mean rank), w = rank / (N + 1), and the logit ln(w / (1 - w)). PBO is the share of
    logits at or below zero: the in-sample winner did not beat the out-of-sample median.
    """
    m = np.asarray(returns, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError("PBO needs a [periods, trials] matrix with at least two trials")
    if n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"PBO needs an even number of blocks, not {n_blocks}")
    rows = m.shape[0] // n_blocks
    if rows < 2:
        raise ValueError(f"PBO needs at least {2 * n_blocks} periods for {n_blocks} blocks, got {m.shape[0]}")
    blocks = m[: rows * n_blocks].reshape(n_blocks, rows, m.shape[1])
    sums, squares = blocks.sum(axis=1), (blocks**2).sum(axis=1)  # [blocks, trials]
    combos = itertools.combinations(range(n_blocks), n_blocks // 2)
    halves = np.array([[b in chosen for b in range(n_blocks)] for chosen in combos], dtype=np.float64)
    count = rows * n_blocks // 2
    train = _sharpe_from_sums(halves @ sums, halves @ squares, count)
    test = _sharpe_from_sums((1 - halves) @ sums, (1 - halves) @ squares, count)
    best = np.argmax(train, axis=1)
    chosen = test[np.arange(len(best)), best][:, None]
    rank = (test < chosen).sum(axis=1) + ((test == chosen).sum(axis=1) + 1) / 2.0
    w = rank / (m.shape[1] + 1)
    logits = np.log(w / (1.0 - w))
    return Overfitting(pbo=float(np.mean(logits <= 0)), logits=[float(x) for x in logits],
                       n_splits=len(halves), n_blocks=n_blocks, rows_per_block=rows, n_trials=m.shape[1])


def _sharpe_from_sums(total: np.ndarray, squares: np.ndarray, n: int) -> np.ndarray:
    """Per-period Sharpe of each column from its sum and sum of squares over ``n`` rows; a
    flat column scores 0."""
    mean = total / n
    var = np.maximum(squares - n * mean * mean, 0.0) / (n - 1)
    std = np.sqrt(var)
    flat = std <= 1e-9 * np.abs(mean)  # a constant column, up to rounding in the sums
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flat, 0.0, mean / std)
