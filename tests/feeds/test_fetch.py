"""``papertape fetch`` against the loopback exchange: resumable, verified archive downloads,
klines and instruments files, and argument errors."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json

import numpy as np
import pytest

from engine.bars.kline_files import read_kline_csv
from engine.broker.instruments import InstrumentBook
from engine.commands.fetch import register, run
from engine.loopback.faults import make_fault
from engine.loopback.server import run_exchange
from engine.loopback.timemap import TimeMap, wall_ms
from tests.helpers.loopback import (
    DAY0,
    expected_klines,
    hist_ns,
    make_trades,
    write_derivatives,
    write_spot,
)

DAYS = ("2025-06-01", "2025-06-02")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["fetch", "--no-progress", *argv])


async def fetch(capsys, *argv: str) -> tuple[int, dict]:
    """Run ``papertape fetch --json ARGV`` (in a thread: it runs its own event loop)."""
    code = await asyncio.to_thread(run, parse("--json", *argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


@pytest.fixture
def remote(tmp_path):
    """An archive directory like public.bybit.com: two derivatives days and one spot day."""
    root = tmp_path / "remote"
    root.mkdir()
    for k, day in enumerate(DAYS):
        trades = make_trades(1500, DAY0 + 86400 * k, 86000, seed=10 + k)
        write_derivatives(root / f"BTCUSDT{day}.csv.gz", trades)
    write_spot(root / "BTCUSDT_2025-06-01.csv.gz", make_trades(500, DAY0, 86000, seed=20))
    return root


@pytest.fixture
async def server(remote):
    async with run_exchange([], archive_dir=remote) as srv:
        yield srv


def by_day(summary: dict) -> dict[str, dict]:
    return {d["day"]: d for d in summary["trades"]}


async def test_trades_download_verify_and_skip(server, remote, tmp_path, capsys):
    out = tmp_path / "data"
    args = ("--symbol", "BTCUSDT", "--start", "2025-06-01", "--end", "2025-06-04", "--out", str(out),
            "--trades", "--archive-url", server.url)
    code, summary = await fetch(capsys, *args)
    days = by_day(summary)
    assert code == 1  # a day is missing; the others are kept
    assert [days[d]["status"] for d in (*DAYS, "2025-06-03")] == ["downloaded", "downloaded", "missing"]
    assert "404" in days["2025-06-03"]["detail"] and not (out / "BTCUSDT2025-06-03.csv.gz").exists()
    for day in DAYS:
        assert (out / f"BTCUSDT{day}.csv.gz").read_bytes() == (remote / f"BTCUSDT{day}.csv.gz").read_bytes()
        assert days[day]["rows"] == 1500
    assert not list(out.glob("*.part"))
    requests = len(server.state()["downloads"])
    code, summary = await fetch(capsys, *args[:5], "2025-06-03", *args[6:])
    assert code == 0 and [d["status"] for d in summary["trades"]] == ["present", "present"]
    assert len(server.state()["downloads"]) == requests  # nothing downloaded again


async def test_corrupt_file_is_fetched_again(server, remote, tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    original = (remote / "BTCUSDT2025-06-01.csv.gz").read_bytes()
    (out / "BTCUSDT2025-06-01.csv.gz").write_bytes(original[: len(original) // 2])
    code, summary = await fetch(capsys, "--symbol", "BTCUSDT", "--start", "2025-06-01", "--end", "2025-06-02",
                                "--out", str(out), "--trades", "--archive-url", server.url)
    assert code == 0 and summary["trades"][0]["status"] == "downloaded"
    assert (out / "BTCUSDT2025-06-01.csv.gz").read_bytes() == original


async def test_partial_file_resumes_with_a_range_request(server, remote, tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    original = (remote / "BTCUSDT2025-06-02.csv.gz").read_bytes()
    half = len(original) // 2
    (out / "BTCUSDT2025-06-02.csv.gz.part").write_bytes(original[:half])
    code, summary = await fetch(capsys, "--symbol", "BTCUSDT", "--start", "2025-06-02", "--end", "2025-06-03",
                                "--out", str(out), "--trades", "--archive-url", server.url)
    assert code == 0 and summary["trades"][0]["status"] == "downloaded"
    assert (out / "BTCUSDT2025-06-02.csv.gz").read_bytes() == original
    assert [(r["status"], r["range"]) for r in server.state()["downloads"]] == [(206, f"bytes={half}-")]


async def test_download_cut_midway_resumes_in_the_same_run(server, remote, tmp_path, capsys):
    server.fire(make_fault("cut", 1))
    out = tmp_path / "data"
    code, summary = await fetch(capsys, "--symbol", "BTCUSDT", "--category", "spot", "--start", "2025-06-01",
                                "--end", "2025-06-02", "--out", str(out), "--trades",
                                "--archive-url", server.url)
    name = "BTCUSDT_2025-06-01.csv.gz"  # spot: the archive's own name, with an underscore
    assert code == 0 and summary["trades"][0]["status"] == "downloaded"
    assert (out / name).read_bytes() == (remote / name).read_bytes()
    first, second = server.state()["downloads"]
    assert (first["status"], first["cut"]) == (200, True)
    assert second["status"] == 206 and second["range"].startswith("bytes=")
    with gzip.open(out / name, "rt") as fh:
        assert fh.readline().startswith("id,timestamp")


async def test_klines_and_instruments_files(tmp_path, capsys):
    trades = make_trades(2000, DAY0, 1800, seed=30)
    archive = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv", trades)
    wall_start = (wall_ms() - 3 * 3_600_000) // 3_600_000 * 3_600_000  # on the hour, three hours ago
    async with run_exchange([archive], speed=0.5, wall_start_ms=wall_start) as srv:
        out = tmp_path / "data"
        start, end = str(wall_start), str(wall_start + 2 * 3_600_000)
        args = ("--symbol", "BTCUSDT", "--start", start, "--end", end, "--out", str(out),
                "--rest-url", srv.url)
        code, summary = await fetch(capsys, *args, "--klines", "1m", "--instruments")
        assert code == 0 and summary["klines"]["status"] == "downloaded"
        code, again = await fetch(capsys, *args, "--klines", "1m")
        assert code == 0 and again["klines"]["status"] == "present"
    path = out / summary["klines"]["file"].rsplit("/", 1)[1]
    assert path.name.startswith("BTCUSDT-1m-") and path.suffix == ".csv"
    frame = read_kline_csv(path)
    ts = hist_ns(trades)
    expected = expected_klines(trades, TimeMap(int(ts[0]), wall_start, 0.5).served_ms(ts), 60_000)
    assert frame["open_time"].tolist() == expected["open_time"].tolist()
    np.testing.assert_allclose(frame["close"], expected["close"])
    np.testing.assert_allclose(frame["volume"], expected["volume"], rtol=1e-9)
    book = InstrumentBook.load(out / "instruments.json")
    assert sorted(i.symbol for i in book.all()) == ["BTCUSDT", "ETHUSDT"]
    assert book.get("linear", "BTCUSDT") == InstrumentBook.load().get("linear", "BTCUSDT")


@pytest.mark.parametrize("argv, message", [
    ((), "nothing to fetch"),
    (("--trades", "--start", "2025-06-01", "--end", "2025-06-02"), "need --symbol"),
    (("--trades", "--symbol", "BTCUSDT", "--start", "2025-06-03", "--end", "2025-06-01"), "not before"),
    (("--trades", "--symbol", "BTCUSDT", "--start", "June", "--end", "2025-06-01"), "--start"),
    (("--klines", "7m", "--symbol", "BTCUSDT", "--start", "2025-06-01", "--end", "2025-06-02"), "--klines"),
])
def test_argument_errors_exit_2(tmp_path, capsys, argv, message):
    assert run(parse("--out", str(tmp_path), *argv)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
