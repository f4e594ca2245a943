"""A trade archive parses the same whatever its chunk size: the columns, the summary and the
file line each malformed row is reported at (chunks are 100,000 rows; a day of BTCUSDT
trades is several of them)."""

from __future__ import annotations

import numpy as np

import engine.feeds.history.archive as archive_module
from tests.helpers.archive import DERIVATIVES_HEADER, derivatives_lines, random_trades

DAY_S = 1_700_006_400  # 2023-11-15 00:00 UTC


def test_rows_and_malformed_lines_are_the_same_in_small_chunks(tmp_path, monkeypatch):
    lines = derivatives_lines(*random_trades(40, DAY_S, 3_600.0, seed=5))
    lines[6] = lines[6].replace(",Buy,", ",Sideways,").replace(",Sell,", ",Sideways,")  # file line 8
    lines[23] = "not,a,trade"  # file line 25
    path = tmp_path / "BTCUSDT2023-11-15.csv"
    path.write_text("\n".join([DERIVATIVES_HEADER, *lines]) + "\n")
    whole = archive_module.parse_trade_csv(path, "derivatives")
    monkeypatch.setattr(archive_module, "PARSE_CHUNK_ROWS", 3)
    chunked = archive_module.parse_trade_csv(path, "derivatives")
    for name in archive_module.COLUMNS:
        np.testing.assert_array_equal(chunked.columns[name], whole.columns[name], err_msg=name)
    assert chunked.meta == whole.meta
    assert chunked.meta["rows"] == 38 and chunked.meta["bad_rows"] == 2
    assert [e.rsplit(":", 2)[-2] for e in chunked.meta["bad_examples"]] == ["8", "25"]
