"""Features are causal, finite-memory, and equal between batch and streaming."""

import numpy as np
import pytest
from conftest import synthetic_bars

from models.features import FEATURES, FeatureSet, FeatureStream
from models.timeframes import CoarseBarBuilder, aggregate, interval_ms


def test_warmup_rows_are_nan_and_later_rows_finite():
    fs = FeatureSet()
    x = fs.compute(synthetic_bars(400))
    assert x.shape == (400, len(FEATURES))
    assert np.isnan(x[: fs.warmup]).any(axis=1).all()
    assert np.isfinite(x[fs.warmup :]).all()


def test_appending_bars_does_not_change_earlier_features():
    bars = synthetic_bars(600, seed=1)
    fs = FeatureSet()
    full = fs.compute(bars)
    for cut in (150, 333, 599):
        np.testing.assert_array_equal(fs.compute(bars.iloc[:cut]), full[:cut])


def test_features_depend_only_on_their_lookback():
    bars = synthetic_bars(600, seed=2)
    fs = FeatureSet()
    full = fs.compute(bars)
    later = fs.compute(bars.iloc[200:].reset_index(drop=True))
    np.testing.assert_allclose(later[fs.warmup :], full[200 + fs.warmup :], rtol=0, atol=1e-12)


def test_streaming_equals_batch():
    bars = synthetic_bars(500, seed=3)
    fs = FeatureSet()
    batch = fs.compute(bars)
    stream = FeatureStream(fs)
    live = np.array([stream.update(row) for row in bars.to_dict("records")])
    np.testing.assert_allclose(live, batch, rtol=0, atol=1e-12, equal_nan=True)


def test_streaming_accepts_objects_with_attributes():
    bars = synthetic_bars(150, seed=4)
    fs = FeatureSet(("rsi", "atr"))
    stream = FeatureStream(fs)
    live = [stream.update(row) for row in bars.itertuples(index=False)]
    np.testing.assert_allclose(live[-1], fs.compute(bars)[-1], rtol=0, atol=1e-12)


def test_feature_subset_and_order():
    bars = synthetic_bars(200)
    sub = FeatureSet(("momentum", "log_return")).compute(bars)
    full = FeatureSet().compute(bars)
    np.testing.assert_array_equal(sub, full[:, [FEATURES.index("momentum"), 0]])
    with pytest.raises(ValueError, match="unknown feature"):
        FeatureSet(("log_return", "moon_phase"))


def test_coarse_bars_are_visible_only_once_closed():
    bars = synthetic_bars(200).drop(index=[50, 51, 97]).reset_index(drop=True)  # gaps
    coarse, visible = aggregate(bars, "1h", "4h")
    ends = coarse["open_time"].to_numpy() + interval_ms("4h")
    closes = bars["open_time"].to_numpy() + interval_ms("1h")
    shown = visible >= 0
    assert (ends[visible[shown]] <= closes[shown]).all()
    nxt = np.minimum(visible + 1, len(coarse) - 1)
    assert ((ends[nxt] > closes) | (visible == len(coarse) - 1)).all()
    builder = CoarseBarBuilder("1h", "4h")
    streamed = [c for row in bars.to_dict("records") for c in builder.update(row)]
    assert len(streamed) == visible.max() + 1
    for got, want in zip(streamed, coarse.to_dict("records"), strict=False):
        assert got == pytest.approx(want, rel=0, abs=0)
