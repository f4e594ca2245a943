"""Helpers for the live-trading tests: the loopback exchange and ``papertape live`` as
subprocesses, the bars a client should have built from what the server served (computed
here from the archive and the server's time mapping, independently of the engine), ledger
consistency checks, and small strategies loaded as ``tests.helpers.live:Class``."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from strategies.base import Strategy, StrategyConfig

ROOT = Path(__file__).resolve().parents[2]
PAPERTAPE = str(Path(sys.executable).parent / "papertape")
SAMPLE_DAY = ROOT / "engine" / "data" / "sample" / "BTCUSDT2025-06-01.csv.gz"
VOLUME_SCALE, TURNOVER_SCALE = 10**8, 10**6


def env() -> dict[str, str]:
    """The environment of a child process: ``tests`` importable (for module:Class strategies)."""
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), out.get("PYTHONPATH")]))
    return out


def wait_for(predicate, timeout: float, what: str, every: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# -- the loopback exchange as a process ---------------------------------------------------

def aligned_start_ms(lead_s: float = 3.0, step_ms: int = 2000) -> int:
    """A served start (``--wall-start-ms``) ``lead_s`` or a little more from now, on a bar
    boundary: the first trade then opens a bar, so a session that starts before it builds
    the same bars whenever it runs."""
    now = time.time_ns() // 1_000_000
    return -(-(now + int(lead_s * 1000)) // step_ms) * step_ms


@dataclass
class Exchange:
    proc: subprocess.Popen
    url: str
    stderr_path: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def state(self) -> dict:
        with urllib.request.urlopen(self.url + "/_control/state", timeout=5) as resp:
            return json.loads(resp.read())

    def fault(self, name: str, arg: float, symbol: str | None = None) -> None:
        """Fire the fault ``name`` now through ``POST /_control/fault``: ``arg`` seconds (stall,
        nopong) or a count (rest403, cut), aimed at ``symbol`` when given."""
        key = "seconds" if name in ("stall", "nopong") else "count"
        body = json.dumps({"fault": name, key: arg} | ({"symbol": symbol} if symbol else {})).encode()
        with urllib.request.urlopen(urllib.request.Request(self.url + "/_control/fault", data=body),
                                    timeout=5) as resp:
            assert json.loads(resp.read())["ok"]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


def start_exchange(data: list[Path], workdir: Path, *, port: int = 0, speed: float = 400,
                   faults: str = "", wall_start_ms: int | None = None, timeout: float = 30) -> Exchange:
    """``papertape serve-exchange`` in a child process, once it says it is listening."""
    args = [PAPERTAPE, "serve-exchange", "--data", *map(str, data), "--host", "127.0.0.1",
            "--port", str(port), "--speed", f"{speed:g}"]
    if faults:
        args += ["--faults", faults]
    if wall_start_ms is not None:
        args += ["--wall-start-ms", str(wall_start_ms)]
    stderr_path = workdir / f"exchange-{time.monotonic_ns()}.err"
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(args, cwd=workdir, stdout=subprocess.PIPE, stderr=err, text=True, env=env())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return Exchange(proc, match.group(1), stderr_path)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"exchange did not start: {stderr_path.read_text()}")


# -- papertape live as a process ----------------------------------------------------------

@dataclass
class LiveResult:
    returncode: int
    result: dict[str, Any] | None
    stderr: str


class LiveProcess:
    """``papertape live --json`` against an exchange; stderr goes to a file."""

    def __init__(self, exchange: Exchange, workdir: Path, ledger: Path, *args: str,
                 duration: str | None = "20s", interval: str = "2s") -> None:
        self.stderr_path = workdir / f"live-{time.monotonic_ns()}.err"
        cmd = [PAPERTAPE, "live", "--json", "--ws-url", exchange.ws, "--rest-url", exchange.url,
               "--ledger", str(ledger), "--interval", interval, "--ping-interval", "1",
               "--pong-timeout", "1", "--stale-after", "2", "--rest-ban-backoff", "0.3", *args]
        if duration is not None:
            cmd += ["--duration", duration]
        self._err = open(self.stderr_path, "w")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=self._err,
                                     text=True, env=env())

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait(self, timeout: float = 90) -> LiveResult:
        out, _ = self.proc.communicate(timeout=timeout)
        self._err.close()
        result = json.loads(out) if out.strip() else None
        return LiveResult(self.proc.returncode, result, self.stderr())

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=10)
        self._err.close()


def papertape(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PAPERTAPE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env())


# -- the ledger ----------------------------------------------------------------------------

def query(db: Path, sql: str, params: tuple = ()) -> pd.DataFrame:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return pd.read_sql_query(sql, con, params=params)
    finally:
        con.close()


def table_has(db: Path, sql: str, params: tuple = ()) -> bool:
    """True once the (possibly still being written) ledger answers ``sql`` with a row."""
    if not db.is_file():
        return False
    try:
        return not query(db, sql, params).empty
    except (sqlite3.OperationalError, pd.errors.DatabaseError):
        return False


def start_gap(db: Path, run_id: int) -> pd.DataFrame:
    """The run's unfilled gap from its start, if any: a first connection so late that REST's
    recent trades could not reach back to the session's start (a loaded machine)."""
    started = int(query(db, "SELECT data_start FROM runs WHERE id = ?", (run_id,)).data_start.iloc[0])
    return query(db, "SELECT * FROM feed_gaps WHERE run_id = ? AND status = 'unfilled' AND gap_from = ?",
                 (run_id, started))


def first_bar_open(db: Path, run_id: int, stream_start_ns: int, step_ns: int) -> int:
    """Where a live run's first bar opens: the stream's first bar when the session was up
    before it (as usual), else the first whole bar after the session's start (a start slowed
    down by a loaded machine); when REST could not reach back to the start (a first connection
    slower still), the bar of the first trade the session got, inside that recorded gap."""
    started = int(query(db, "SELECT data_start FROM runs WHERE id = ?", (run_id,)).data_start.iloc[0])
    lost = start_gap(db, run_id)
    first = -(-started // step_ns) * step_ns if lost.empty else int(lost.gap_to.iloc[0]) // step_ns * step_ns
    return max(stream_start_ns, first)


def check_ledger(db: Path, run_ids: list[int], status: str = "finished") -> pd.DataFrame:
    """The ledger of a run (and the runs it resumed, oldest first) is consistent: the last run
    has ``status``; every fill's order exists; the position after each fill equals the
    cumulative signed fills; every order update belongs to a recorded order. Returns the fills."""
    marks = ",".join(str(int(i)) for i in run_ids)
    runs = query(db, f"SELECT * FROM runs WHERE id IN ({marks}) ORDER BY id")
    assert list(runs.id) == sorted(run_ids)
    assert runs.status.iloc[-1] == status, runs[["id", "status", "error"]]
    orders = query(db, f"SELECT * FROM orders WHERE run_id IN ({marks})")
    fills = query(db, f"SELECT * FROM fills WHERE run_id IN ({marks}) ORDER BY run_id, id")
    updates = query(db, f"SELECT * FROM order_updates WHERE run_id IN ({marks})")
    assert set(fills.client_order_id) <= set(orders.client_order_id), "a fill without its order"
    assert set(updates.client_order_id) <= set(orders.client_order_id), "an update without its order"
    assert not orders.client_order_id.duplicated().any(), "an order id used twice"
    signed = (fills.side * fills.qty).cumsum()  # as floats: no fills read as object columns
    assert np.allclose(fills.position.to_numpy(dtype=float), signed.to_numpy(dtype=float), atol=1e-9), \
        pd.DataFrame({"ledger": fills.position, "cumulative": signed})
    filled = fills.groupby("client_order_id").qty.sum()
    for oid, qty in filled.items():
        assert qty <= float(orders.set_index("client_order_id").qty[oid]) + 1e-9, f"{oid} overfilled"
    return fills


# -- what the server served ------------------------------------------------------------------

def archive_trades(path: Path) -> pd.DataFrame:
    """A derivatives archive's trades in file order with exact integer-ns times (parsed from
    the decimal text, not through a float)."""
    frame = pd.read_csv(path, dtype={"timestamp": str, "trdMatchID": str})
    whole, _, frac = frame.timestamp.str.partition(".").T.to_numpy()
    frac = pd.Series(frac).str.ljust(9, "0").str[:9]
    ts = whole.astype(np.int64) * 1_000_000_000 + frac.astype(np.int64).to_numpy()
    out = pd.DataFrame({"ts": ts, "price": frame.price.astype(float), "size": frame["size"].astype(float),
                        "id": frame.trdMatchID})
    return out.sort_values("ts", kind="stable").reset_index(drop=True)


def served_ms(trades: pd.DataFrame, wall_start_ms: int, speed: int,
              hist_start_ns: int | None = None) -> np.ndarray:
    """``T_served = wall_start_ms + (T_hist - hist_start) // speed`` in integer ms (hist_start:
    the first trade, the server's default)."""
    assert float(speed) == int(speed), "integer speeds keep the mapping exact"
    start = int(trades.ts.iloc[0]) if hist_start_ns is None else hist_start_ns
    return wall_start_ms + (trades.ts.to_numpy() - start) // (int(speed) * 1_000_000)


def expected_bars(trades: pd.DataFrame, served: np.ndarray, interval_ms: int) -> pd.DataFrame:
    """Bars of the trades at their served times (open time in ns as the index): prices from
    the first/last trade in serving order, volume and turnover summed exactly in the
    aggregator's fixed units."""
    price, size = trades.price.to_numpy(), trades["size"].to_numpy()
    frame = pd.DataFrame({
        "open_time": served // interval_ms * interval_ms * 1_000_000, "price": price,
        "vol": np.rint(size * VOLUME_SCALE).astype(np.int64),
        "turn": np.rint(price * size * TURNOVER_SCALE).astype(np.int64),
    })
    bars = frame.groupby("open_time").agg(
        open=("price", "first"), high=("price", "max"), low=("price", "min"), close=("price", "last"),
        vol=("vol", "sum"), turn=("turn", "sum"), trades=("price", "size"))
    bars["volume"] = bars.pop("vol") / VOLUME_SCALE
    bars["turnover"] = bars.pop("turn") / TURNOVER_SCALE
    return bars


def compare_bars(live: pd.DataFrame, expected: pd.DataFrame) -> list[str]:
    """Differences between ledger bars and expected bars (same open times), as text lines."""
    problems = []
    for row in live.itertuples():
        if row.open_time not in expected.index:
            if row.trades:
                problems.append(f"bar {row.open_time}: {row.trades} trades, none were served")
            continue
        want = expected.loc[row.open_time]
        for column in ("open", "high", "low", "close", "trades"):
            if getattr(row, column) != want[column]:
                problems.append(f"bar {row.open_time} {column}: live {getattr(row, column)} "
                                f"served {want[column]}")
        for column in ("volume", "turnover"):
            if not np.isclose(getattr(row, column), want[column], rtol=1e-12, atol=1e-9):
                problems.append(f"bar {row.open_time} {column}: live {getattr(row, column)} "
                                f"served {want[column]}")
    return problems


@dataclass(frozen=True)
class BuyThenRestConfig(StrategyConfig):
    """``qty`` bought at market on the first bar; then a buy limit ``depth`` below the market
    rests; ``sell`` > 0 sells that much at market on the first bar of a (resumed) run that
    already holds a position."""

    qty: float = 0.002
    depth: float = 0.5
    sell: float = 0.0


class BuyThenRest(Strategy):
    """Buys, then leaves a limit order resting far from the market. Remembers what it saw at
    ``on_start`` (position, cash, open orders) and saves it, so a test can read the view a
    resumed run started from."""

    config_class = BuyThenRestConfig

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.at_start: dict[str, Any] = {}
        self.bars = 0
        self.sold = False

    def on_start(self) -> None:
        self.at_start = {"position": self.position, "cash": self.cash, "open_orders": self.open_orders()}

    def on_bar(self, bar) -> None:
        self.bars += 1
        cfg = self.config
        if self.position == 0 and not self.open_orders():
            self.submit_order("buy", cfg.qty)
        elif self.position > 0 and cfg.sell > 0 and not self.sold:
            self.sold = True
            self.submit_order("sell", cfg.sell)
        elif self.position > 0 and not self.open_orders():
            self.submit_order("buy", cfg.qty, "limit", price=round(bar.close * (1 - cfg.depth), 1))

    def on_save(self) -> dict[str, Any]:
        return {"at_start": self.at_start, "bars": self.bars}


class WatchThenRest(BuyThenRest):
    """:class:`BuyThenRest` that also saves what it saw at each bar: the bar's close time,
    its position, cash and equity (a decision may use only what was stamped by then)."""

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.seen: list[list[float]] = []

    def on_bar(self, bar) -> None:
        self.seen.append([bar.close_time, self.position, self.cash, self.equity])
        super().on_bar(bar)

    def on_save(self) -> dict[str, Any]:
        return super().on_save() | {"seen": self.seen}


@dataclass(frozen=True)
class FlipConfig(StrategyConfig):
    qty: float = 0.001


class FlipEveryBar(Strategy):
    """A market order on every bar close, alternately buying and selling (the benchmark's
    bar-to-fill path)."""

    config_class = FlipConfig

    def on_bar(self, bar) -> None:
        self.submit_order("sell" if self.position > 0 else "buy", self.config.qty)


class PlottingFlip(FlipEveryBar):
    """:class:`FlipEveryBar` that also plots each bar's close as ``close``."""

    def on_bar(self, bar) -> None:
        super().on_bar(bar)
        self.plot("close", bar.close)


class Idle(Strategy):
    """Does nothing (the benchmark's throughput path)."""


# -- live and replay ledgers -----------------------------------------------------------------

RUN_ROWS = {  # table -> order of rows; every column but id and run_id is compared
    "bars": "open_time, id", "orders": "id", "order_updates": "id", "fills": "id", "equity": "ts, id",
    "feed_gaps": "id", "strategy_state": "id", "plots": "ts, id",
}


def run_rows(db: Path, run_id: int) -> dict[str, pd.DataFrame]:
    out = {}
    for name, order in RUN_ROWS.items():
        frame = query(db, f"SELECT * FROM {name} WHERE run_id = ? ORDER BY {order}", (run_id,))
        out[name] = frame.drop(columns=["id", "run_id"]).reset_index(drop=True)
    return out


def assert_same_rows(live_db: Path, live_run: int, replay_db: Path, replay_run: int) -> dict[str, int]:
    """The run's bars, orders, order updates, fills and equity rows are equal, column by
    column; returns the row counts."""
    live, replay = run_rows(live_db, live_run), run_rows(replay_db, replay_run)
    for name in RUN_ROWS:
        a, b = live[name], replay[name]
        assert len(a) == len(b), f"{name}: {len(a)} live rows, {len(b)} replayed"
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)
    return {name: len(frame) for name, frame in live.items()}
