"""No look-ahead in the model strategy: what the model is handed for a bar is a function of
that bar and the bars before it, so no model (a cheating oracle included) can know the
next bar; and a future planted in the data after the clock never changes a forecast or an
order made before it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.bars.kline_files import read_kline_csv
from models.runner import ModelRunner
from tests.helpers import model as model_helpers
from tests.helpers.model import ar1_bars, backtest, rows, train_tiny, write_bars

HOUR_NS = 3_600_000 * 1_000_000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lookahead")
    path = write_bars(ar1_bars(600, phi=0.3, seed=4), root / "bars.csv")
    bars = read_kline_csv(path)
    return bars, path, train_tiny(bars, "linformer", root / "model.pt")


def test_windows_computed_ahead_are_the_windows_a_stream_of_the_past_gives(setup, tmp_path):
    bars, path, ckpt = setup
    model_helpers.WINDOWS.clear()
    backtest(path, tmp_path / "l.db", {"checkpoint": ckpt, "in_sample": "true"},
             strategy="tests.helpers.model:SpyModel")
    stream = ModelRunner.load(str(ckpt)).stream()  # sees bar i only after bars 0..i-1
    past_only = [w for w in map(stream.push, bars.to_dict("records")) if w is not None]
    assert len(model_helpers.WINDOWS) == len(past_only) > 400
    for handed, streamed in zip(model_helpers.WINDOWS, past_only, strict=True):
        np.testing.assert_array_equal(handed, streamed)


@pytest.mark.parametrize("cut", [200, 333, 520])
def test_a_planted_future_changes_nothing_before_it(setup, tmp_path, cut):
    """Two worlds share bars 0..cut and then part: the next bar moves 3% up in one and 3%
    down in the other, with a different path after. Forecasts and orders up to the cut's
    close are the same in both, so none of them can be the next bar's return."""
    bars, path, ckpt = setup
    worlds = []
    for sign, seed in ((1, 1), (-1, 2)):
        future = ar1_bars(len(bars) - cut - 1, phi=0.0, seed=seed, price=bars.close[cut] * (1 + 0.03 * sign))
        future["open_time"] = bars.open_time.iloc[cut + 1 :].to_numpy()
        world = pd.concat([bars.iloc[: cut + 1], future], ignore_index=True)
        world.loc[cut + 1, "open"] = bars.close[cut]
        first = world.loc[cut + 1, ["open", "close"]]
        world.loc[cut + 1, ["high", "low"]] = [first.max(), first.min()]
        db = tmp_path / f"{sign}.db"
        result = backtest(write_bars(world, tmp_path / f"{sign}.csv"), db,
                          {"checkpoint": ckpt, "in_sample": "true", "threshold": "0"})
        worlds.append((world, db, result.run_id))
    (a, db_a, run_a), (b, db_b, run_b) = worlds
    assert np.sign(a.close[cut + 1] - a.close[cut]) == -np.sign(b.close[cut + 1] - b.close[cut])
    clock = int(bars.open_time[cut]) * 1_000_000 + HOUR_NS  # the close of bar `cut`
    for table, ts in (("predictions", "ts_event"), ("orders", "ts_init")):
        a_rows, b_rows = rows(db_a, table, run_a), rows(db_b, table, run_b)
        before_a, before_b = a_rows[a_rows[ts] <= clock], b_rows[b_rows[ts] <= clock]
        assert len(before_a) > 5
        pd.testing.assert_frame_equal(before_a, before_b, check_exact=True)
    a_rows, b_rows = rows(db_a, "predictions", run_a), rows(db_b, "predictions", run_b)
    after_a = a_rows[a_rows.ts_event > clock]["values"]
    after_b = b_rows[b_rows.ts_event > clock]["values"]
    assert not after_a.equals(after_b.set_axis(after_a.index))  # the worlds did part
