"""Kline CSV checks: rows out of order are put in order, repeated bars and malformed rows
are refused with the file and line, and a text cell outside the prices becomes missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.bars.kline_files import BarFileError, has_repeats, read_kline_csv
from engine.feeds.history.sources import DataError, open_source
from tests.helpers.broker import write_klines


def open_klines(paths):
    return open_source([str(p) for p in paths], symbol="BTCUSDT", category="linear", interval=None)


def test_rows_out_of_order_are_sorted(tmp_path):
    frame = write_klines(tmp_path / "k.csv", 50)
    shuffled = frame.sample(frac=1.0, random_state=3)
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False, float_format="%.10g")
    read = read_kline_csv(tmp_path / "shuffled.csv")
    pd.testing.assert_frame_equal(read, read_kline_csv(tmp_path / "k.csv"))
    assert read["open_time"].is_monotonic_increasing


def test_a_repeated_bar_is_refused(tmp_path):
    frame = write_klines(tmp_path / "k.csv", 20)
    pd.concat([frame, frame.iloc[[7]]]).to_csv(tmp_path / "twice.csv", index=False)
    with pytest.raises(BarFileError, match="twice.csv: duplicate open_time"):
        read_kline_csv(tmp_path / "twice.csv")


def test_files_are_joined_in_time_order_and_overlaps_refused(tmp_path):
    frame = write_klines(tmp_path / "all.csv", 40)
    frame.iloc[20:].to_csv(tmp_path / "late.csv", index=False, float_format="%.10g")
    frame.iloc[:20].to_csv(tmp_path / "early.csv", index=False, float_format="%.10g")
    joined = open_klines([tmp_path / "late.csv", tmp_path / "early.csv"]).frame
    np.testing.assert_array_equal(joined["open_time"].to_numpy(), frame["open_time"].to_numpy())
    frame.iloc[15:].to_csv(tmp_path / "overlap.csv", index=False, float_format="%.10g")
    with pytest.raises(DataError, match="overlap"):
        open_klines([tmp_path / "early.csv", tmp_path / "overlap.csv"])


@pytest.mark.parametrize(("column", "value"), [("close", "nan"), ("high", "1.0"), ("open", "-5"),
                                               ("low", "abc"), ("open_time", "")])
def test_a_malformed_row_is_refused_with_its_line(tmp_path, column, value):
    frame = write_klines(tmp_path / "k.csv", 10).astype({column: object})
    frame.loc[4, column] = value
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(BarFileError, match=r"bad.csv:6: malformed bar \(1 such row"):
        read_kline_csv(tmp_path / "bad.csv")


def test_a_text_cell_outside_the_prices_becomes_missing(tmp_path):
    """A column pandas reads as text is converted to numbers cell by cell: the rest of it
    stays exact, and the one cell that is not a number is missing (volume is not checked)."""
    frame = write_klines(tmp_path / "k.csv", 10).astype({"volume": object})
    frame.loc[3, "volume"] = "n/a"
    frame.to_csv(tmp_path / "text.csv", index=False, float_format="%.10g")
    read = read_kline_csv(tmp_path / "text.csv")
    assert read["volume"].dtype == np.float64
    assert read["volume"].isna().tolist() == [i == 3 for i in range(10)]
    clean = read_kline_csv(tmp_path / "k.csv")
    pd.testing.assert_frame_equal(read.drop(index=3), clean.drop(index=3))


def test_has_repeats_on_sorted_values():
    assert not has_repeats(np.array([], dtype=np.int64))
    assert not has_repeats(np.array([5], dtype=np.int64))
    assert not has_repeats(np.array([1, 2, 3], dtype=np.int64))
    assert has_repeats(np.array([1, 2, 2, 3], dtype=np.int64))
