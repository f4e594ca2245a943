"""Live benchmark: the live client (``run_live_async``: websocket client, feed decoder, bus,
bar aggregator, simulated broker, strategy, ledger, all in this process) fed over a real
websocket on 127.0.0.1, from a dense synthetic archive (about 2 million trades a day, in
Bybit's derivatives layout, written once under ``--workdir``).

(a) throughput from the loopback exchange: a ``papertape serve-exchange`` process replays
    the archive fast enough to serve ~100,000 trades/s; a strategy that only counts trades
    (it overrides ``on_trades``, so every batch reaches it through the bus) notes when each
    batch arrived. Figures: trades handled per wall second over the span trades flowed
    (overall and the slowest whole second), what the server sent, the CPU time of each
    process per trade, and how far behind the client was when the stream ended. The
    exchange builds every message's JSON in Python as it goes; when it cannot keep up,
    the figure is the exchange's rate, not the client's, and (a2) says what the client
    can take.

(a2) client capacity: the same archive turned into the loopback exchange's own messages
    (``engine.bybit.render.trade_message``, grouped by served millisecond as the
    exchange groups them, at 5000x) before the clock starts, then sent by a minimal
    websocket server in another process as fast as the client reads them (the socket's
    back-pressure paces the sender). Same counting strategy; trade times run ahead of the
    wall clock, so bars stay open (as they do within a minute live).

(b) latency at a busy but sustainable rate (~2,300 trades/s from the loopback exchange,
    1 s bars), with a strategy that sends a market order on every bar close and another
    whenever it has no order working (so most trade messages fill one; no simulated
    latency, so an order fills on the next trades that arrive). Wall-clock delays, one host:

    - message -> handled: from the server's send stamp of a trade message to the strategy's
      ``on_trades`` for it (the broker has matched its trades by then); split into
      message -> received (server queue, socket, websocket read) and received -> handled
      (the client: parse, decode, de-duplicate, queue, bus, broker, bars);
    - message -> fill: from the send stamp of the message whose trades filled an order to
      the strategy's ``on_fill`` for that fill;
    - bar due -> on_bar: from a bar's scheduled close (its end plus the close delay) to
      ``on_bar`` (timer lateness plus queueing); bar due -> fill: to the fill of the order
      sent in that ``on_bar`` (includes waiting for the next trade, a market property).

    The send stamp is the ``ts`` the loopback exchange writes in each message: wall time in
    whole milliseconds, taken when the message is built, just before it is queued to the
    socket. Truncated to the millisecond, it makes every "message ->" figure 0 to 1 ms
    too large (0.5 ms on average); "received -> handled" has nanosecond stamps. Trades
    that came by REST (backfills) have no send stamp and are left out.

    python bench/live.py            # about 70 s (the first run also writes the archive)
    python bench/live.py --quick    # about 45 s
    python bench/live.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.core.config import load_config  # noqa: E402
from engine.feeds.live.feed import LiveFeed  # noqa: E402
from engine.run.live import LiveOptions, run_live_async  # noqa: E402
from strategies.base import Strategy  # noqa: E402

PAPERTAPE = str(Path(sys.executable).parent / "papertape")
DAY0 = 1748736000  # 2025-06-01 UTC
DENSITY = 2_000_000  # trades per day

# message receive time (ns) -> the server's send stamp (ms), filled by the feed spy below
SENT: dict[int, int] = {}


def make_archive(workdir: Path, hours: float = 8) -> Path:
    """(Re)use a day file with ``hours`` of trades at ``DENSITY`` per day."""
    n = int(DENSITY * hours / 24)
    path = workdir / f"h{hours:g}" / "BTCUSDT2025-06-01.csv"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    ts = np.sort(np.round(DAY0 + rng.uniform(0, hours * 3600, n), 4))
    size = np.round(rng.integers(1, 500, n) * 0.001, 3)
    frame = pd.DataFrame({
        "timestamp": [f"{t:.4f}" for t in ts], "symbol": "BTCUSDT",
        "side": np.where(rng.random(n) < 0.5, "Buy", "Sell"), "size": size,
        "price": np.round(100_000 + np.cumsum(rng.normal(0, 1.5, n)), 1), "tickDirection": "PlusTick",
        "trdMatchID": [f"{i:08x}-0000-4000-8000-{int(hours * 60):012x}" for i in range(n)],
        "grossValue": 0.0, "homeNotional": size, "foreignNotional": 0.0, "RPI": 0,
    })
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False, float_format="%.10g")
    tmp.rename(path)
    print(f"  wrote {path}: {n:,} trades", file=sys.stderr)
    return path


def start_exchange(archives: Path | list[Path], speed: float, wall_start_ms: int,
                   env: dict) -> tuple[subprocess.Popen, str]:
    """``serve-exchange`` over one archive or several (a symbol each), once it says where it listens."""
    paths = [archives] if isinstance(archives, Path) else archives
    proc = subprocess.Popen([PAPERTAPE, "serve-exchange", "--data", *map(str, paths), "--port", "0",
                             "--speed", f"{speed:g}", "--wall-start-ms", str(wall_start_ms)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    for line in proc.stdout:
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return proc, match.group(1)
    raise RuntimeError("the exchange did not start")


def server_state(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url + "/_control/state", timeout=5) as resp:
        return json.loads(resp.read())


def spy_on_the_feed() -> None:
    """Remember each trade message's send stamp by its receive time (Trades.ts_init)."""
    original = LiveFeed._on_data

    def on_data(self, message: dict, text: str, received: int) -> None:
        if "ts" in message:
            SENT[received] = message["ts"]
        original(self, message, text, received)

    LiveFeed._on_data = on_data


class CountTrades(Strategy):
    """Does nothing but note when each batch of trades reached it."""

    marks: list[tuple[int, int]] = []

    def on_trades(self, trades) -> None:
        CountTrades.marks.append((time.perf_counter_ns(), len(trades.price)))


class LatencyProbe(Strategy):
    """A market order on every bar close and whenever no order is working; records delays."""

    handled: list[tuple[int, int]] = []  # per message: (received - sent, handled - received) ns
    bar_late: list[int] = []
    msg_fill: list[int] = []
    bar_fill: list[int] = []
    close_delay_ns = 0
    _bar_orders: dict[str, int] = {}

    def _flip(self) -> str:
        return self.submit_order("sell" if self.position > 0 else "buy", 0.001)

    def on_trades(self, trades) -> None:
        now = time.time_ns()
        sent = SENT.get(trades.ts_init)
        if sent is not None:
            LatencyProbe.handled.append((trades.ts_init - sent * 1_000_000, now - trades.ts_init))
        if not self.open_orders():
            self._flip()

    def on_bar(self, bar) -> None:
        now = time.time_ns()
        due = bar.close_time + LatencyProbe.close_delay_ns
        LatencyProbe.bar_late.append(now - due)
        LatencyProbe._bar_orders[self._flip()] = due

    def on_fill(self, fill) -> None:
        now = time.time_ns()
        sent = SENT.get(fill.ts_init)
        if sent is not None:
            LatencyProbe.msg_fill.append(now - sent * 1_000_000)
        due = LatencyProbe._bar_orders.pop(fill.client_order_id, None)
        if due is not None:
            LatencyProbe.bar_fill.append(now - due)


def live_config(workdir: Path, strategy: str, name: str):
    cfg = load_config(None, [f"ledger.path={workdir / (name + '.db')}"])
    return dataclasses.replace(cfg, strategy=dataclasses.replace(cfg.strategy, name=strategy, params={}))


async def session(cfg, url: str, interval: str, seconds: float):
    port = url.rsplit(":", 1)[1]
    opts = LiveOptions("BTCUSDT", "linear", interval=interval, ws_url=f"ws://127.0.0.1:{port}", rest_url=url,
                       duration_s=seconds, status_every_s=3600, ping_interval_s=20, pong_timeout_s=10,
                       stale_after_s=30)
    return await run_live_async(cfg, opts)


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of this process, or of process ``pid``."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rates(marks: list[tuple[int, int]]) -> dict:
    """Trades handled per second over the span batches arrived, and the slowest whole second."""
    data = np.array(marks, dtype=np.int64)
    t, n = data[:, 0], data[:, 1]
    span = (t[-1] - t[0]) / 1e9
    per_second = pd.Series(n).groupby((t - t[0]) // 1_000_000_000).sum()
    whole = per_second.iloc[1:-1] if len(per_second) > 2 else per_second
    handled = int(n.sum())
    return {"seconds": round(span, 2), "trades_handled": handled, "trades_per_s": round(handled / span),
            "slowest_second_trades": int(whole.min()), "batches": len(n),
            "trades_per_batch": round(handled / len(n), 1)}


def speed_for(rate: float) -> float:
    """The replay speed at which the archive serves ``rate`` trades/s."""
    return rate / (DENSITY / 86400)


def throughput(workdir: Path, env: dict, seconds: float, rate: float) -> dict:
    """(a) from the loopback exchange."""
    archive = make_archive(workdir, HOURS)
    speed = speed_for(rate)
    wall_start = time.time_ns() // 1_000_000 + LEAD_MS  # the exchange starts streaming then
    proc, url = start_exchange(archive, speed, wall_start, env)
    CountTrades.marks.clear()
    try:
        wait = max(0.0, wall_start / 1000 - time.time())
        cpu0, server0 = cpu_seconds(), cpu_seconds(proc.pid)
        result = asyncio.run(session(live_config(workdir, "__main__:CountTrades", "throughput"), url, "1m",
                                     wait + seconds))
        cpu, server_cpu = cpu_seconds() - cpu0, cpu_seconds(proc.pid) - server0
        state = server_state(url)
    finally:
        proc.terminate()
        proc.wait()
    out = rates(CountTrades.marks)
    return out | {
        "speed": round(speed, 1), "server_trades_sent": state["trades_served"],
        "server_trades_per_s": round(state["trades_served"] / seconds), "tape_finished": state["finished"],
        "server_messages": state["messages_published"],
        "client_cpu_us_per_trade": round(cpu / out["trades_handled"] * 1e6, 2),
        "server_cpu_us_per_trade": round(server_cpu / max(state["trades_served"], 1) * 1e6, 2),
        "behind_at_stop": state["trades_served"] - result.extra["trades_received"],
        "reconnects": result.extra["reconnects"], "status": result.status,
    }


# -- (a2): a minimal sender of prebuilt loopback-exchange messages ---------------------------

def build_frames(archive: Path, out: Path, start_ms: int) -> int:
    """The archive as the loopback exchange's trade messages at 5000x from ``start_ms``."""
    from engine.bybit.render import dumps, trade_message
    from engine.feeds.history.archive import TradeArchive
    from engine.loopback.stream import message_bounds
    from engine.loopback.tape import seq_of, tick_directions

    chunks = list(TradeArchive(archive).chunks(1 << 20, with_ids=True))
    ts = np.concatenate([c.ts for c in chunks])
    price = np.concatenate([c.price for c in chunks])
    size = np.concatenate([c.size for c in chunks])
    side = np.concatenate([c.side for c in chunks])
    ids = np.concatenate([c.trade_id for c in chunks])
    served = start_ms + (ts - ts[0]) // (5000 * 1_000_000)
    tick, _, _ = tick_directions(price, np.nan, 1)
    seq = seq_of(ts)
    with open(out, "w") as fh:
        for lo, hi in message_bounds(served, 0):
            rows = slice(lo, hi)
            fh.write(dumps(trade_message("linear", "BTCUSDT", int(served[lo]), served[rows], price[rows],
                                         size[rows], side[rows], ids[rows], tick[rows], seq[rows])) + "\n")
    return len(ts)


async def send_frames(path: Path) -> None:
    """Serve ``path``'s frames to the first subscriber as fast as it reads them; answer
    recent-trade with an empty list (a quiet market: no backfill to do)."""
    from http import HTTPStatus

    from websockets.asyncio.server import serve

    frames = path.read_text().splitlines()
    done = asyncio.Event()

    def rest(connection, request):
        if request.path.startswith("/v5/market/"):
            body = {"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": []},
                    "retExtInfo": {}, "time": int(time.time() * 1000)}
            return connection.respond(HTTPStatus.OK, json.dumps(body))
        return None

    async def handler(ws) -> None:
        async for text in ws:
            request = json.loads(text)
            if request.get("op") == "ping":
                await ws.send(json.dumps({"success": True, "ret_msg": "pong", "conn_id": "b", "req_id": "",
                                          "op": "ping"}))
            elif request.get("op") == "subscribe":
                await ws.send(json.dumps({"success": True, "ret_msg": "", "conn_id": "b",
                                          "req_id": request.get("req_id", ""), "op": "subscribe"}))
                for frame in frames:
                    await ws.send(frame)
                done.set()

    async with serve(handler, "127.0.0.1", 0, process_request=rest, compression=None,
                     max_size=2**24) as server:
        print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.sleep(3600)


def capacity(workdir: Path, env: dict) -> dict:
    """(a2) the client fed as fast as it reads."""
    archive = make_archive(workdir, HOURS)
    frames = workdir / "frames.jsonl"
    start_ms = time.time_ns() // 1_000_000 + 10_000
    n = build_frames(archive, frames, start_ms)
    proc = subprocess.Popen([sys.executable, __file__, "--send-frames", str(frames)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    url = re.search(r"listening on (http://\S+)", proc.stdout.readline()).group(1)
    CountTrades.marks.clear()
    try:
        cpu0, sender0 = cpu_seconds(), cpu_seconds(proc.pid)
        seconds = n / 60_000 + 3  # enough unless the client reads fewer than 60,000 trades/s
        result = asyncio.run(session(live_config(workdir, "__main__:CountTrades", "capacity"), url, "1m",
                                     seconds))
        cpu, sender_cpu = cpu_seconds() - cpu0, cpu_seconds(proc.pid) - sender0
    finally:
        proc.terminate()
        proc.wait()
    out = rates(CountTrades.marks)
    return out | {"trades_sent": n, "all_received": out["trades_handled"] == n,
                  "client_cpu_us_per_trade": round(cpu / out["trades_handled"] * 1e6, 2),
                  "sender_cpu_us_per_trade": round(sender_cpu / n * 1e6, 2), "status": result.status}


def latency(workdir: Path, env: dict, seconds: float, rate: float) -> dict:
    """(b) delays at a sustainable rate from the loopback exchange."""
    archive = make_archive(workdir, HOURS)
    speed = speed_for(rate)
    cfg = live_config(workdir, "__main__:LatencyProbe", "latency")
    LatencyProbe.close_delay_ns = cfg.bars.close_delay_ms * 1_000_000
    for series in (LatencyProbe.handled, LatencyProbe.bar_late, LatencyProbe.msg_fill, LatencyProbe.bar_fill):
        series.clear()
    wall_start = time.time_ns() // 1_000_000 + LEAD_MS
    proc, url = start_exchange(archive, speed, wall_start, env)
    try:
        wait = max(0.0, wall_start / 1000 - time.time())
        result = asyncio.run(session(cfg, url, "1s", wait + seconds))
    finally:
        proc.terminate()
        proc.wait()
    handled = np.array(LatencyProbe.handled, dtype=np.int64)

    def stats(values) -> dict:
        ms = np.asarray(values, dtype=np.float64) / 1e6
        if len(ms) == 0:
            return {"n": 0}
        return {"n": len(ms), "median_ms": round(float(np.median(ms)), 3),
                "p99_ms": round(float(np.percentile(ms, 99)), 3), "max_ms": round(float(ms.max()), 3)}

    return {
        "speed": round(speed, 1), "trades_per_s": round(rate), "fills": result.fills, "bars": result.bars,
        "message_to_handled": stats(handled[:, 0] + handled[:, 1]),
        "message_to_received": stats(handled[:, 0]),
        "received_to_handled": stats(handled[:, 1]),
        "message_to_fill": stats(LatencyProbe.msg_fill),
        "bar_due_to_on_bar": stats(LatencyProbe.bar_late),
        "bar_due_to_fill": stats(LatencyProbe.bar_fill),
        "status": result.status,
    }


HOURS = 8
LEAD_MS = 4000


def report(out: dict) -> None:
    t, c, lat = out["throughput"], out["capacity"], out["latency"]
    print(f"(a)  from the loopback exchange: {t['trades_per_s']:,} trades/s handled over {t['seconds']} s "
          f"({t['trades_handled']:,} trades, {t['batches']:,} batches of {t['trades_per_batch']}); "
          f"slowest whole second {t['slowest_second_trades']:,}")
    print(f"     the exchange sent {t['server_trades_per_s']:,} trades/s (asked for {out['rate']:,.0f} at "
          f"{t['speed']}x) at {t['server_cpu_us_per_trade']} us CPU/trade; the client used "
          f"{t['client_cpu_us_per_trade']} us CPU/trade and was {t['behind_at_stop']:,} trades behind "
          "at the stop" + (" (the archive ran out: rates are lower bounds)" if t["tape_finished"] else ""))
    print(f"(a2) client capacity, prebuilt exchange messages sent as fast as read: "
          f"{c['trades_per_s']:,} trades/s over {c['seconds']} s ({c['trades_handled']:,} of "
          f"{c['trades_sent']:,} trades, {c['batches']:,} batches); slowest whole second "
          f"{c['slowest_second_trades']:,}; client {c['client_cpu_us_per_trade']} us CPU/trade")
    print(f"(b)  latency at {lat['trades_per_s']:,} trades/s from the loopback exchange (1 s bars, "
          f"{lat['bars']} bars, {lat['fills']:,} fills):")
    for key in ("message_to_handled", "message_to_received", "received_to_handled", "message_to_fill",
                "bar_due_to_on_bar", "bar_due_to_fill"):
        s = lat[key]
        line = f"n={s['n']}" if not s["n"] else (
            f"median {s['median_ms']:6.3f} ms   p99 {s['p99_ms']:6.3f} ms   max {s['max_ms']:7.3f} ms   "
            f"(n={s['n']:,})")
        print(f"     {key.replace('_', ' '):22s} {line}")
    print(f"     ({out['cpus']} CPUs; load average at the end {out['loadavg']})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "papertape-bench-live",
                        help="where the synthetic archive is written (reused)")
    parser.add_argument("--rate", type=float, default=100_000, help="trades/s asked of the exchange in (a)")
    parser.add_argument("--latency-rate", type=float, default=2_300, help="trades/s served in (b)")
    parser.add_argument("--send-frames", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send_frames:
        asyncio.run(send_frames(args.send_frames))
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PAPERTAPE_CACHE=str(args.workdir / "cache"))
    os.environ["PAPERTAPE_CACHE"] = env["PAPERTAPE_CACHE"]
    logging.basicConfig(level=logging.ERROR)
    spy_on_the_feed()
    out = {
        "rate": args.rate,
        "throughput": throughput(args.workdir, env, 3.0 if args.quick else 6.0, args.rate),
        "capacity": capacity(args.workdir, env),
        "latency": latency(args.workdir, env, 10.0 if args.quick else 30.0, args.latency_rate),
        "cpus": os.cpu_count(), "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    if args.json:
        print(json.dumps(out))
    else:
        report(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
