"""The curve's metrics folded a chunk at a time are numpy's over the whole curve, to the bit:
numpy's pairwise sum rebuilt from pieces, and the metrics of a curve cut anywhere (stamps
repeated across the cuts too) equal those of the curve in one piece."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from engine.analysis.metrics import compute_metrics, fill_metrics, folded_curve_metrics, portfolio_curve
from engine.analysis.pairwise import PairwiseSum

NO_FILLS = pd.DataFrame({name: np.empty(0) for name in ("qty", "price", "fee", "realized_pnl", "position")})
NO_FUNDING = pd.DataFrame({"payment": np.empty(0)})


@pytest.mark.parametrize("leaf", [128, 1000, 1 << 16])
def test_pairwise_sum_of_pieces_is_numpys_sum(leaf):
    rng = np.random.default_rng(leaf)
    for n in (0, 1, 7, 128, 129, 1000, 65_537, 300_001):
        values = rng.normal(1e9, 1e3, n) * rng.random(n) ** 3
        total = PairwiseSum(n, leaf)
        cuts = np.sort(rng.integers(0, n + 1, 30))
        for a, b in zip([0, *cuts], [*cuts, n], strict=True):
            total.add(values[a:b])
        assert total.total() == np.add.reduce(values)


def test_pairwise_sum_refuses_more_or_fewer_values_than_announced():
    total = PairwiseSum(3)
    total.add(np.ones(2))
    with pytest.raises(ValueError):
        total.total()
    with pytest.raises(ValueError):
        total.add(np.ones(2))


def _curve(rng, n):
    step = 60_000_000_000
    ts = 1_577_836_800_000_000_000 + np.cumsum(rng.integers(0, 3, n)) * step  # repeated stamps: a portfolio's
    equity = 1e6 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    position = np.where(rng.random(n) < 0.5, 0.0, 1.0)
    return pd.DataFrame({"ts": ts, "equity": equity, "position": position}), int(ts[0]) - step


@pytest.mark.parametrize("n", [1, 2, 3, 500, 200_000])
def test_a_curve_folded_in_chunks_has_the_metrics_of_the_whole(n):
    rng = np.random.default_rng(n)
    frame, start = _curve(rng, n)
    ts, equity, opened = frame["ts"].to_numpy(), frame["equity"].to_numpy(), frame["position"].to_numpy() != 0
    cuts = np.sort(rng.integers(0, n + 1, 25)).tolist()

    def passes():
        edges = zip([0, *cuts], [*cuts, n], strict=True)
        return iter([(ts[a:b], equity[a:b], opened[a:b]) for a, b in edges])

    kw = {"initial_cash": 1e6, "interval": "1m", "start_ns": start}
    whole = compute_metrics(portfolio_curve(frame), NO_FILLS, NO_FUNDING, **kw)
    folded = fill_metrics(folded_curve_metrics(passes, **kw), NO_FILLS, NO_FUNDING)
    assert json.dumps(folded, sort_keys=True) == json.dumps(whole, sort_keys=True)
    assert whole["bars"] == len(np.unique(ts))
