"""Checks on the committed synthetic sample (engine/data/sample), made by scripts/make_sample.py."""

from __future__ import annotations

import datetime as dt
import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "engine" / "data" / "sample"
SCRIPT = ROOT / "scripts" / "make_sample.py"
DAYS = [dt.date(2025, 6, 1), dt.date(2025, 6, 2), dt.date(2025, 6, 3)]
NAMES = [f"BTCUSDT{d.isoformat()}.csv.gz" for d in DAYS]
HEADER = (
    "timestamp,symbol,side,size,price,tickDirection,trdMatchID,"
    "grossValue,homeNotional,foreignNotional,RPI"
)
UUID_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def _day_start(d: dt.date) -> int:
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp())


@pytest.fixture(scope="module", autouse=True)
def regenerated(tmp_path_factory: pytest.TempPathFactory):
    """Regenerate the sample with the default arguments in a child process that runs
    while the other tests read the committed files (keeps the module under 5 s)."""
    out = tmp_path_factory.mktemp("sample")
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    yield proc, out
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def frames() -> list[pd.DataFrame]:
    out = []
    for name in NAMES:
        df = pd.read_csv(SAMPLE / name, dtype=str, keep_default_na=False)
        out.append(df)
    return out


@pytest.fixture(scope="module")
def trades(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """All days in one frame, with exact integer columns."""
    df = pd.concat(frames, ignore_index=True)
    df["ts_units"] = df["timestamp"].str.replace(".", "", regex=False).astype("int64")
    df["lots"] = np.rint(df["size"].astype(float) * 1000).astype("int64")
    df["pticks"] = np.rint(df["price"].astype(float) * 10).astype("int64")
    df["px"] = df["price"].astype(float)
    return df


@pytest.fixture(scope="module")
def minute_bars(trades: pd.DataFrame) -> pd.DataFrame:
    t = pd.to_datetime(trades["ts_units"] // 10_000, unit="s")
    s = pd.Series(trades["px"].to_numpy(), index=t.to_numpy())
    start = pd.Timestamp(DAYS[0])
    idx = pd.date_range(start, start + pd.Timedelta(days=len(DAYS)), freq="1min", inclusive="left")
    last = s.groupby(s.index.floor("1min")).last().reindex(idx).ffill()
    count = s.groupby(s.index.floor("1min")).size().reindex(idx, fill_value=0)
    return pd.DataFrame({"ret": np.log(last).diff(), "count": count})


def test_files_and_gzip_header() -> None:
    assert sorted(p.name for p in SAMPLE.glob("*.csv.gz")) == NAMES
    total = 0
    for name in NAMES:
        raw = (SAMPLE / name).read_bytes()
        total += len(raw)
        assert raw[:2] == b"\x1f\x8b"
        assert raw[4:8] == b"\x00\x00\x00\x00"  # mtime 0: reproducible
        with gzip.open(SAMPLE / name, "rt") as fh:
            assert fh.readline().rstrip("\n") == HEADER
    assert 3e6 <= total <= 6e6


def test_columns_and_formats(trades: pd.DataFrame) -> None:
    df = trades
    assert len(df) > 60_000
    assert (df["symbol"] == "BTCUSDT").all()
    assert df["side"].isin(["Buy", "Sell"]).all()
    assert df["timestamp"].str.fullmatch(r"\d{10}\.\d{4}").all()
    assert df["size"].str.fullmatch(r"\d+\.\d{1,3}").all()  # on the 0.001 lot
    assert (df["lots"] >= 1).all()
    assert df["price"].str.fullmatch(r"\d+\.\d").all()  # on the 0.1 tick
    assert (
        df["tickDirection"].isin(["PlusTick", "ZeroPlusTick", "MinusTick", "ZeroMinusTick"]).all()
    )
    assert df["trdMatchID"].str.fullmatch(UUID_RE).all()
    assert df["trdMatchID"].is_unique
    assert (df["homeNotional"] == df["size"]).all()
    # foreignNotional = size * price, exactly, without float noise
    assert df["foreignNotional"].str.fullmatch(r"\d+\.\d{1,8}").all()
    exact = df["lots"] * df["pticks"]  # in units of 1e-4 USDT
    assert (np.rint(df["foreignNotional"].astype(float) * 1e4).astype("int64") == exact).all()
    assert df["grossValue"].str.fullmatch(r"\d\.\d{4}e\+\d\d").all()
    assert np.allclose(df["grossValue"].astype(float), exact * 1e4, rtol=1e-4)
    assert df["RPI"].isin(["0", "1"]).all()
    assert 0.005 < (df["RPI"] == "1").mean() < 0.05
    assert 0.005 <= df["lots"].median() / 1000 <= 0.02


def test_timestamps_inside_day_and_sorted(frames: list[pd.DataFrame]) -> None:
    for day, df in zip(DAYS, frames, strict=True):
        units = df["timestamp"].str.replace(".", "", regex=False).astype("int64").to_numpy()
        lo = _day_start(day) * 10_000
        assert units.min() >= lo
        assert units.max() < lo + 86_400 * 10_000
        assert (np.diff(units) >= 0).all()


def test_tick_direction_consistent(trades: pd.DataFrame) -> None:
    p = trades["pticks"].to_numpy()
    d = np.sign(np.diff(p))
    # last non-zero change up to each row (the sequence runs across files)
    idx = np.where(d != 0, np.arange(len(d)), -1)
    idx = np.maximum.accumulate(idx)
    ok = idx >= 0
    last = np.where(ok, d[np.maximum(idx, 0)], 0)
    expect = np.where(
        d > 0,
        "PlusTick",
        np.where(d < 0, "MinusTick", np.where(last > 0, "ZeroPlusTick", "ZeroMinusTick")),
    )
    got = trades["tickDirection"].to_numpy()[1:]
    assert (got[ok] == expect[ok]).all()


def test_sweeps(trades: pd.DataFrame) -> None:
    """Fills sharing a timestamp: same side, prices monotone in the taker's direction."""
    df = trades
    shared = df["ts_units"].duplicated(keep=False)
    assert 0.05 < shared.mean() < 0.2
    g = df[shared].groupby("ts_units")
    assert (g["side"].nunique() == 1).mean() > 0.95  # a few are chance coincidences
    same = df["ts_units"].diff().eq(0) & df["side"].eq(df["side"].shift())
    step = df["pticks"].diff()
    buy = df["side"] == "Buy"
    assert (step[same & buy] >= 0).all()
    assert (step[same & ~buy] <= 0).all()


def test_continuity_and_coverage(frames: list[pd.DataFrame], minute_bars: pd.DataFrame) -> None:
    for prev, nxt in zip(frames, frames[1:], strict=False):
        a = float(prev["price"].iloc[-1])
        b = float(nxt["price"].iloc[0])
        assert abs(b / a - 1) < 0.005
    assert (minute_bars["count"] == 0).sum() <= 20
    units = pd.concat(frames)["timestamp"].str.replace(".", "", regex=False).astype("int64")
    assert np.diff(units.to_numpy()).max() < 300 * 10_000


def test_stylised_facts(minute_bars: pd.DataFrame) -> None:
    r = minute_bars["ret"].dropna()
    # daily volatility from 1-minute returns, per day: BTC-like 1%..5%
    for _, day in r.groupby(r.index.date):
        vol = float(np.sqrt((day**2).sum()))
        assert 0.01 < vol < 0.05, vol
    # fat tails: Pearson kurtosis well above the normal's 3
    assert r.kurt() + 3 > 5
    # volatility clustering
    assert r.abs().autocorr(1) > 0.05
    # bursty arrivals
    c = minute_bars["count"]
    assert c.std() / c.mean() > 1


def test_regenerates_byte_identical(regenerated) -> None:
    proc, out = regenerated
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert sorted(p.name for p in out.iterdir()) == NAMES
    for name in NAMES:
        assert (out / name).read_bytes() == (SAMPLE / name).read_bytes(), name
