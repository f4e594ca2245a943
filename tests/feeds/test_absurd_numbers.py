"""Non-finite and absurd numbers (``inf``, ``1e308``, negative sizes, a lone 1970 row, a
far-future stamp) are malformed everywhere data enters: trade archives, kline files,
recordings and websocket messages. Rows in a file are counted and left out; a file with
nothing usable is one clear line."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from engine.bybit.parse import MessageError, decode_confirmed_klines, decode_trades
from engine.cli import main
from engine.feeds.history.archive import ArchiveError, TradeArchive
from engine.feeds.history.sources import aggregate_bars, open_source
from tests.helpers.archive import DERIVATIVES_HEADER, SPOT_HEADER, random_trades, write_derivatives
from tests.helpers.broker import write_klines

DAY0 = 1748736000  # 2025-06-01 00:00 UTC

ABSURD_ROWS = [  # derivatives rows: timestamp,symbol,side,size,price,...
    f"{DAY0 + 100.5:.4f},BTCUSDT,Buy,0.01,inf,PlusTick,x1,0,0,0,0",
    f"{DAY0 + 101.5:.4f},BTCUSDT,Buy,0.01,1e308,PlusTick,x2,0,0,0,0",
    f"{DAY0 + 102.5:.4f},BTCUSDT,Sell,-0.5,100000.0,PlusTick,x3,0,0,0,0",
    f"{DAY0 + 103.5:.4f},BTCUSDT,Sell,inf,100000.0,PlusTick,x4,0,0,0,0",
    "86400.0000,BTCUSDT,Buy,0.01,100000.0,PlusTick,x5,0,0,0,0",  # 1970-01-02
    "1e15,BTCUSDT,Buy,0.01,100000.0,PlusTick,x6,0,0,0,0",  # far future: int64 ns overflows
    "1e308,BTCUSDT,Buy,0.01,100000.0,PlusTick,x7,0,0,0,0",
]


@pytest.mark.parametrize("name", ["BTCUSDT2025-06-01.csv", "trades.csv.gz"])
def test_absurd_trade_rows_are_counted_and_left_out(tmp_path, name):
    ts, p, s, side = random_trades(200, DAY0 + 60, 3000, seed=4)
    path = write_derivatives(tmp_path / name, ts, p, s, side, extra_lines=ABSURD_ROWS)
    info = TradeArchive(path).info()
    assert info.rows == 200 and info.bad_rows == len(ABSURD_ROWS), info.bad_by_reason
    source = open_source([str(path)], symbol="", category="linear", interval="1m")
    assert DAY0 * 10**9 <= source.range.start and source.range.end <= (DAY0 + 86400) * 10**9
    bars = aggregate_bars(source, "1m")
    assert all(np.isfinite([b.open, b.high, b.low, b.close, b.volume, b.turnover]).all() for b in bars)
    assert max(b.high for b in bars) < 200_000 and sum(b.trades for b in bars) == 200


def test_a_row_outside_a_daily_archives_day_is_malformed(tmp_path):
    ts, p, s, side = random_trades(50, DAY0 + 60, 600, seed=5)
    stray = f"{DAY0 + 3 * 86400:.4f},BTCUSDT,Buy,0.01,100000.0,PlusTick,y1,0,0,0,0"
    path = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv", ts, p, s, side, extra_lines=[stray])
    info = TradeArchive(path).info()
    assert info.rows == 50 and info.bad_by_reason == {"outside the file's day": 1}


def test_an_archive_with_no_usable_row_is_one_line(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(DERIVATIVES_HEADER + "\n" + "\n".join(ABSURD_ROWS) + "\n")
    with pytest.raises(ArchiveError, match="no well-formed trades"):
        TradeArchive(path).info()
    assert main(["backtest", "--data", str(path), "--ledger", str(tmp_path / "l.db"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no well-formed trades" in err[0], err
    assert not (tmp_path / "l.db").exists()


def test_spot_archive_far_future_ms_is_malformed(tmp_path):
    rows = [SPOT_HEADER] + [f"{i},{(DAY0 + i) * 1000},100.5,0.1,buy,0" for i in range(1, 20)]
    rows += ["99,99999999999999999,100.5,0.1,buy,0", "98,5,100.5,0.1,sell,0",
             "97,1748736050000,1e308,1,buy,0"]
    path = tmp_path / "BTCUSDT_2025-06-01.csv"
    path.write_text("\n".join(rows) + "\n")
    info = TradeArchive(path).info()
    assert info.rows == 19 and info.bad_rows == 3


@pytest.mark.parametrize("column, value", [("close", "inf"), ("high", "1e308"), ("volume", "-3"),
                                           ("open_time", "60000"), ("open_time", "1e18"),
                                           ("turnover", "inf"), ("trades", "inf")])
def test_an_absurd_kline_refuses_the_file_with_its_line(tmp_path, capsys, column, value):
    frame = write_klines(tmp_path / "k.csv", 20).astype({column: object})
    frame.loc[6, column] = value
    frame.to_csv(tmp_path / "bad.csv", index=False)
    code = main(["backtest", "--data", str(tmp_path / "bad.csv"), "--ledger", str(tmp_path / "l.db"),
                 "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "bad.csv:8: malformed bar" in err[0], err
    assert not (tmp_path / "l.db").exists()


def trade_message(**row) -> dict:
    base = {"T": (DAY0 + 5) * 1000, "s": "BTCUSDT", "S": "Buy", "v": "0.01", "p": "100000", "i": "a"}
    return {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1, "data": [base | row]}


@pytest.mark.parametrize("row", [{"p": "inf"}, {"p": "1e308"}, {"v": "-1"}, {"v": "nan"},
                                 {"T": 86_400_000}, {"T": 10**17}, {"T": 10**30}, {"T": "1e400"}])
def test_an_absurd_websocket_trade_is_a_malformed_message(row):
    with pytest.raises(MessageError):
        decode_trades(trade_message(**row), 0)


@pytest.mark.parametrize("row", [{"close": "inf"}, {"high": "1e308"}, {"volume": "-1"},
                                 {"start": 10**30}, {"low": "2e5"}])
def test_an_absurd_websocket_kline_is_a_malformed_message(row):
    start = (DAY0 + 60) * 1000
    candle = {"start": start, "end": start + 59_999, "interval": "1", "open": "100", "close": "101",
              "high": "102", "low": "99", "volume": "3", "turnover": "300", "confirm": True}
    with pytest.raises(MessageError):
        decode_confirmed_klines({"topic": "kline.1.BTCUSDT", "data": [candle | row]}, 0)


def test_a_recording_with_absurd_lines_replays_the_rest(tmp_path):
    started = (DAY0 + 90) * 10**9  # half-way through a minute
    header = {"papertape_recording": 1, "symbol": "BTCUSDT", "category": "linear", "mode": "trades",
              "interval": "1m", "started": started}
    lines = [json.dumps(header)]
    for k in range(1, 120):
        trade = trade_message(T=(DAY0 + 90 + k) * 1000, p=str(100000 + k), i=f"t{k}")
        lines.append(json.dumps({"t": started + k * 10**9, "k": "ws", "d": json.dumps(trade)}))
    lines.insert(5, json.dumps({"t": 10**30, "k": "ws", "d": "{}"}))  # far future receive time
    lines.insert(9, json.dumps({"t": "soon", "k": "ws", "d": "{}"}))
    lines.insert(12, json.dumps({"t": started + 11 * 10**9, "k": "ws",
                                 "d": json.dumps(trade_message(p="inf", i="z"))}))
    lines.insert(14, "not json")
    lines.append(json.dumps({"t": started + 200 * 10**9, "k": "end"}))
    path = tmp_path / "rec.jsonl"
    path.write_text("\n".join(lines) + "\n")
    source = open_source([str(path)], symbol="", category="linear", interval="1m")
    assert source.range.end == started + 200 * 10**9
    bars = aggregate_bars(source, "1m")
    assert source.bad_rows == 4
    assert sum(b.trades for b in bars) == 119 - 29  # the live start's partial first minute is skipped
    assert max(b.high for b in bars) < 200_000


def test_report_of_a_tiny_run_prints_no_numpy_warning(tmp_path, capsys):
    write_klines(tmp_path / "k.csv", 3)
    ledger = str(tmp_path / "l.db")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["backtest", "--data", str(tmp_path / "k.csv"), "--ledger", ledger, "--no-progress"]) == 0
        assert main(["report", "--ledger", ledger, "--run", "1"]) == 0
    assert "Warning" not in capsys.readouterr().err
