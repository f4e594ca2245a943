#!/usr/bin/env python3
"""Generate SYNTHETIC Bybit BTCUSDT trade archives for papertape's demo and benchmarks.

The files this script writes are NOT market data. Every trade is simulated by the
seeded model below. They are there so the engine, its tests and its benchmarks can run
without a network. Real trade archives are published at
https://public.bybit.com/trading/BTCUSDT/ and can be downloaded with `papertape fetch`.

Output
------
One gzipped CSV per UTC day, named like Bybit's public derivatives archive,
``{SYMBOL}{YYYY-MM-DD}.csv.gz`` (e.g. ``BTCUSDT2025-06-01.csv.gz``), with the header::

    timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional,RPI

* ``timestamp``: epoch seconds with 4 decimals (100-µs resolution), ascending and
  strictly inside the file's UTC day. Fills of one sweep share a timestamp.
* ``side``: taker side, ``Buy`` or ``Sell``.
* ``size``: BTC, a multiple of the 0.001 lot. ``price``: a multiple of the 0.1 tick.
* ``tickDirection``: ``PlusTick``/``MinusTick`` when the price is above/below the
  previous trade's, ``ZeroPlusTick``/``ZeroMinusTick`` when it is equal and the last
  change was up/down. The sequence runs across day files.
* ``trdMatchID``: a UUID (version-4 layout) built from the seeded RNG.
* ``grossValue`` = size*price*1e8 in ``%.4e`` notation, ``homeNotional`` = size,
  ``foreignNotional`` = size*price (exact), ``RPI`` = 1 for about 2% of trades.

The bytes depend only on the arguments: gzip is written with mtime=0 and an empty
file name in its header, and day ``k`` uses the generator ``default_rng([seed, k])``
plus the state carried over from day ``k-1``. So ``--days 1`` writes the same first
file as ``--days 3``.

Model (one step = 1 second; all state runs on across day files)
----------------------------------------------------------------
* Volatility: GARCH(1,1) on 1-second log returns,
  ``h[t+1] = omega + ALPHA*h[t]*e[t]**2 + BETA*h[t]`` with ALPHA=0.004, BETA=0.9955
  (persistence 0.9995, half-life about 23 minutes); ``omega`` makes the unconditional
  daily volatility DAILY_VOL = 2.5% (about 48% annualised). ``e`` is Student-t with
  DF=4, scaled to unit variance and clipped at ±25.
* Regimes: a 3-state Markov chain (calm / active / frenzy, mean durations 30 min /
  5 min / 45 s) multiplies volatility by 0.7 / 1.5 / 4 and trade intensity by
  0.6 / 3 / 50 (both renormalised to a stationary mean of 1).
* Intraday seasonality: activity peaks in the US session (15:00 UTC) and bottoms in
  the late Asian night, with bumps at the 00/08/16 UTC funding times; volatility
  follows the square root of the activity curve.
* Mid price: ``log m[t+1] = log m[t] + sqrt(h[t]) * season_vol(t) * regime_vol * e[t]``;
  the mid moves once per second at a random instant. The bid is the mid rounded
  down to the 0.1 tick, the ask one tick above; buyers pay the ask, sellers hit the
  bid (bid-ask bounce).
* Arrivals: taker orders per second are Poisson with a self-exciting (discrete
  Hawkes) intensity
  ``lam[t] = FLOOR + MU*season(t)*regime_int*min(h[t]/h_bar, 50)*(0.4 + 0.6*e[t]**2) + X[t]``,
  ``X[t+1] = HAWKES_DECAY*X[t] + HAWKES_JUMP*n[t]`` (decay time 15 s, branching
  ratio 0.7). FLOOR (45% of the base rate) keeps the market from going silent.
  ``FLOOR`` and ``MU`` are set so that a day has about ``--trades-per-day`` fills on
  average (single days vary by ±20%). Times inside a second are uniform on the
  100-µs grid.
* Side: P(Buy) = 1/(1+exp(-1.5*e[t])): takers buy in the seconds the price rises.
* Sweeps: 3.5% of orders sweep the book: 1 + Geometric(0.5) fills (at least 2,
  mean 3) at one timestamp, same side, each fill 0 or 1 tick further than the
  previous one, so about 10% of the fills belong to a sweep.
* Sizes: lognormal, median 0.01 BTC, sigma 1.5, rounded to the 0.001 lot (at least
  one lot), capped at 100 BTC.

Typical figures for the defaults (seed 7, 3 days): see engine/data/sample/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER = (
    "timestamp,symbol,side,size,price,tickDirection,trdMatchID,"
    "grossValue,homeNotional,foreignNotional,RPI"
)

SECONDS_PER_DAY = 86_400
TS_UNITS = 10_000  # timestamp resolution: 100 µs
LOT = 0.001  # size step, BTC (sizes are handled as integer lots)
TICK = 0.1  # price step, USDT (prices are handled as integer ticks)

# volatility: GARCH(1,1) on 1-second returns with Student-t innovations
DAILY_VOL = 0.025
ALPHA = 0.004
BETA = 0.9955
DF = 4.0
SHOCK_CLIP = 25.0

# arrivals: discrete Hawkes on 1-second bins
HAWKES_TAU = 15.0  # seconds
HAWKES_BRANCHING = 0.7
HAWKES_DECAY = math.exp(-1.0 / HAWKES_TAU)
HAWKES_JUMP = HAWKES_BRANCHING * (1.0 - HAWKES_DECAY)
VOL_INTENSITY_CAP = 50.0
INTENSITY_FLOOR = 0.45  # share of the mean rate that is always there

# Markov-switching market regimes (calm, active, frenzy), on 1-second steps.
# Volatility and trade intensity multipliers are normalised below so that their
# stationary means (of the variance, and of the intensity) are 1.
REGIME_NAMES = ("calm", "active", "frenzy")
REGIME_MEAN_DURATION = np.array([1800.0, 300.0, 45.0])  # seconds
REGIME_JUMP = np.array(  # where a regime goes when it ends
    [[0.0, 0.85, 0.15], [0.8, 0.0, 0.2], [0.4, 0.6, 0.0]]
)
REGIME_VOL = np.array([0.7, 1.5, 4.0])
REGIME_INTENSITY = np.array([0.6, 3.0, 50.0])

# taker side and sweeps
SIDE_BETA = 1.5
SWEEP_PROB = 0.035
SWEEP_EXTRA_P = 0.5  # fills of a sweep ~ 1 + Geometric(p), mean 1 + 1/p
SWEEP_STEP_PROB = 0.5  # chance that the next fill of a sweep is one tick worse

# sizes
SIZE_MEDIAN = 0.01
SIZE_SIGMA = 1.5
SIZE_MAX_LOTS = 100_000

RPI_SHARE = 0.02

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "engine" / "data" / "sample"

TICK_NAMES = np.array(["ZeroMinusTick", "MinusTick", "ZeroPlusTick", "PlusTick"])


def _season(hours: np.ndarray) -> np.ndarray:
    """Intraday activity curve (mean about 1): peak in the US session, trough in
    the late Asian night, bumps at the 00/08/16 UTC funding times."""
    base = (
        1.0
        + 0.45 * np.cos(2 * np.pi * (hours - 15.0) / 24.0)
        + 0.12 * np.cos(4 * np.pi * (hours - 9.0) / 24.0)
    )
    for f in (0.0, 8.0, 16.0, 24.0):
        base = base + 0.6 * np.exp(-0.5 * ((hours - f) / 0.15) ** 2)
    return base


_HOURS = (np.arange(SECONDS_PER_DAY) + 0.5) / 3600.0
SEASON = _season(_HOURS)
SEASON /= SEASON.mean()
SEASON_VOL = np.sqrt(SEASON)
SEASON_VOL /= np.sqrt((SEASON_VOL**2).mean())


def _regime_stationary() -> np.ndarray:
    leave = 1.0 / REGIME_MEAN_DURATION
    q = REGIME_JUMP * leave[:, None]
    q[np.diag_indices(3)] = -leave
    # solve pi Q = 0, sum(pi) = 1
    a = np.vstack([q.T, np.ones(3)])
    b = np.array([0.0, 0.0, 0.0, 1.0])
    return np.linalg.lstsq(a, b, rcond=None)[0]


REGIME_PI = _regime_stationary()
REGIME_VOL = REGIME_VOL / math.sqrt(float(REGIME_PI @ REGIME_VOL**2))
REGIME_INTENSITY = REGIME_INTENSITY / float(REGIME_PI @ REGIME_INTENSITY)
REGIME_LEAVE = (1.0 / REGIME_MEAN_DURATION).tolist()
REGIME_CUM = np.cumsum(REGIME_JUMP, axis=1).tolist()


@dataclass
class State:
    """What carries over from one day to the next."""

    h: float  # GARCH variance of the next 1-second return
    excite: float  # Hawkes excitation
    log_mid: float
    last_tick: int  # price of the previous trade, in ticks
    last_up: bool  # was the last price change up?
    regime: int = 0


def _fmt_fixed(values: np.ndarray, decimals: int) -> list[str]:
    """Integers scaled by 10**decimals -> decimal strings without float noise,
    trailing zeros stripped but keeping at least one decimal."""
    scale = 10**decimals
    fracs = [f"{f:0{decimals}d}".rstrip("0") or "0" for f in range(scale)]
    whole, frac = np.divmod(values, scale)
    return [f"{w}.{fracs[f]}" for w, f in zip(whole.tolist(), frac.tolist(), strict=True)]


def simulate_day(
    rng: np.random.Generator,
    state: State,
    floor: float,
    mu: float,
    h_bar: float,
    omega: float,
) -> tuple[dict[str, np.ndarray], State]:
    n_sec = SECONDS_PER_DAY
    # standardised Student-t shocks (unit variance), clipped
    eps = rng.standard_t(DF, size=n_sec) * math.sqrt((DF - 2.0) / DF)
    np.clip(eps, -SHOCK_CLIP, SHOCK_CLIP, out=eps)
    uni = rng.random(n_sec)  # for the Poisson draws (inverse transform)
    normals = rng.standard_normal(n_sec)  # normal approximation for large intensities
    reg_u = rng.random((n_sec, 2)).tolist()  # regime switches
    jump_at = rng.random(n_sec)  # when inside each second the mid moves

    # sequential part: GARCH variance, Hawkes intensity, order counts
    h = np.empty(n_sec)
    counts = np.empty(n_sec, dtype=np.int64)
    regime = np.empty(n_sec, dtype=np.int64)
    hv, xv, rg = state.h, state.excite, state.regime
    reg_int = REGIME_INTENSITY.tolist()
    eps_l = eps.tolist()
    uni_l = uni.tolist()
    nrm_l = normals.tolist()
    season_l = SEASON.tolist()
    exp = math.exp
    for t in range(n_sec):
        e = eps_l[t]
        ru = reg_u[t]
        if ru[0] < REGIME_LEAVE[rg]:
            cum = REGIME_CUM[rg]
            rg = 0 if ru[1] < cum[0] else (1 if ru[1] < cum[1] else 2)
        regime[t] = rg
        h[t] = hv
        vol_mult = hv / h_bar
        if vol_mult > VOL_INTENSITY_CAP:
            vol_mult = VOL_INTENSITY_CAP
        lam = floor + mu * season_l[t] * reg_int[rg] * vol_mult * (0.4 + 0.6 * e * e) + xv
        # Poisson(lam) by inverse transform of a pre-drawn uniform
        if lam < 60.0:
            u = uni_l[t]
            k = 0
            p = exp(-lam)
            c = p
            while u > c and k < 400:
                k += 1
                p *= lam / k
                c += p
        else:
            k = max(0, int(round(lam + math.sqrt(lam) * nrm_l[t])))
        counts[t] = k
        xv = HAWKES_DECAY * xv + HAWKES_JUMP * k
        hv = omega + ALPHA * hv * e * e + BETA * hv

    # log-mid at the start of every second and the end of the day
    step = np.sqrt(h) * SEASON_VOL * REGIME_VOL[regime] * eps
    log_mid = state.log_mid + np.concatenate(([0.0], np.cumsum(step)))

    # --- orders ------------------------------------------------------------
    n_orders = int(counts.sum())
    sec = np.repeat(np.arange(n_sec), counts)
    offs = rng.integers(0, TS_UNITS, size=n_orders)
    order_ts = sec * TS_UNITS + offs
    order_ts.sort(kind="stable")  # seconds are already grouped; sort within them
    sec = order_ts // TS_UNITS
    frac = (order_ts % TS_UNITS) / TS_UNITS
    mid = np.exp(np.where(frac < jump_at[sec], log_mid[sec], log_mid[sec + 1]))
    p_buy = 1.0 / (1.0 + np.exp(-SIDE_BETA * eps[sec]))
    buy = rng.random(n_orders) < p_buy
    bid = np.floor(mid / TICK + 1e-9).astype(np.int64)
    first_px = np.where(buy, bid + 1, bid)

    # --- sweeps: several fills at one timestamp --------------------------------
    sweep = rng.random(n_orders) < SWEEP_PROB
    fills = np.ones(n_orders, dtype=np.int64)
    fills[sweep] = 1 + rng.geometric(SWEEP_EXTRA_P, size=int(sweep.sum()))
    n = int(fills.sum())
    order_idx = np.repeat(np.arange(n_orders), fills)
    starts = np.cumsum(fills) - fills
    pos = np.arange(n) - starts[order_idx]  # fill number inside its order
    steps = (rng.random(n) < SWEEP_STEP_PROB) & (pos > 0)
    # cumulative steps inside each order
    csum = np.cumsum(steps)
    depth = csum - (csum[starts] - steps[starts])[order_idx]
    side_buy = buy[order_idx]
    px = first_px[order_idx] + np.where(side_buy, depth, -depth)
    ts = order_ts[order_idx]

    # --- sizes ---------------------------------------------------------------
    lots = np.rint(
        np.exp(math.log(SIZE_MEDIAN / LOT) + SIZE_SIGMA * rng.standard_normal(n))
    ).astype(np.int64)
    np.clip(lots, 1, SIZE_MAX_LOTS, out=lots)

    # --- trade ids, RPI --------------------------------------------------------
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    rpi = (rng.random(n) < RPI_SHARE).astype(np.int64)

    # --- tick direction (runs across days through the state) ---------------------
    prev = np.concatenate(([state.last_tick], px[:-1]))
    diff = np.sign(px - prev)
    # last non-zero change, forward filled
    idx = np.where(diff != 0, np.arange(n), -1)
    np.maximum.accumulate(idx, out=idx)
    last_dir = np.where(idx >= 0, diff[np.maximum(idx, 0)], 1 if state.last_up else -1)
    up = last_dir > 0
    code = np.where(diff > 0, 3, np.where(diff < 0, 1, np.where(up, 2, 0)))

    trades = {
        "ts": ts,
        "buy": side_buy,
        "lots": lots,
        "px": px,
        "tick": code,
        "uuid": raw,
        "rpi": rpi,
    }
    new_state = State(
        h=hv,
        excite=xv,
        log_mid=float(log_mid[-1]),
        last_tick=int(px[-1]) if n else state.last_tick,
        last_up=bool(up[-1]) if n else state.last_up,
        regime=rg,
    )
    return trades, new_state


def render_csv(trades: dict[str, np.ndarray], symbol: str, day_start: int) -> bytes:
    ts = trades["ts"] + day_start * TS_UNITS
    lots = trades["lots"]
    px = trades["px"]
    ts_s = [f"{t // TS_UNITS}.{t % TS_UNITS:04d}" for t in ts.tolist()]
    size_s = _fmt_fixed(lots, 3)
    px_s = [f"{p // 10}.{p % 10}" for p in px.tolist()]
    notional = lots * px  # units of LOT*TICK = 1e-4 USDT, exact
    fn_s = _fmt_fixed(notional, 4)
    gv_s = [f"{v:.4e}" for v in (notional * 1.0e4).tolist()]  # size*price*1e8
    hx = trades["uuid"].tobytes().hex()
    ids = []
    for i in range(len(lots)):
        s = hx[32 * i : 32 * i + 32]
        ids.append(f"{s[:8]}-{s[8:12]}-{s[12:16]}-{s[16:20]}-{s[20:]}")
    side_s = np.where(trades["buy"], "Buy", "Sell").tolist()
    tick_s = TICK_NAMES[trades["tick"]].tolist()
    rpi_s = trades["rpi"].tolist()
    buf = io.StringIO()
    buf.write(HEADER + "\n")
    buf.writelines(
        f"{a},{symbol},{b},{c},{d},{e},{f},{g},{c},{h},{r}\n"
        for a, b, c, d, e, f, g, h, r in zip(
            ts_s, side_s, size_s, px_s, tick_s, ids, gv_s, fn_s, rpi_s, strict=True
        )
    )
    return buf.getvalue().encode("ascii")


def gzip_bytes(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return out.getvalue()


def generate(
    out: Path,
    days: int,
    start: dt.date,
    seed: int,
    trades_per_day: int,
    symbol: str,
    price: float,
) -> list[tuple[Path, int]]:
    h_bar = DAILY_VOL**2 / SECONDS_PER_DAY
    omega = h_bar * (1.0 - ALPHA - BETA)
    # the season, regime and volatility multipliers each average about 1; an order
    # has 1 + SWEEP_PROB / SWEEP_EXTRA_P fills on average; the Hawkes feedback
    # multiplies the exogenous rate by 1 / (1 - branching)
    fills_per_order = 1.0 + SWEEP_PROB * (1.0 / SWEEP_EXTRA_P)
    orders_per_sec = trades_per_day / fills_per_order / SECONDS_PER_DAY
    floor = INTENSITY_FLOOR * orders_per_sec * (1.0 - HAWKES_BRANCHING)
    mu = orders_per_sec * (1.0 - INTENSITY_FLOOR) * (1.0 - HAWKES_BRANCHING)
    start_tick = int(round(price / TICK))
    state = State(h=h_bar, excite=0.0, log_mid=math.log(price), last_tick=start_tick, last_up=True)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for k in range(days):
        day = start + dt.timedelta(days=k)
        day_start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
        rng = np.random.default_rng([seed, k])
        trades, state = simulate_day(rng, state, floor, mu, h_bar, omega)
        path = out / f"{symbol}{day.isoformat()}.csv.gz"
        path.write_bytes(gzip_bytes(render_csv(trades, symbol, day_start)))
        written.append((path, len(trades["ts"])))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(
            "Write SYNTHETIC Bybit-format trade archives, one gzipped CSV per UTC day "
            "named {SYMBOL}{YYYY-MM-DD}.csv.gz, from a seeded model: GARCH(1,1) "
            "volatility with Student-t shocks, Markov-switching regimes, intraday "
            "seasonality and self-exciting (Hawkes) trade arrivals. The same "
            "arguments always give the same bytes."
        ),
        epilog=(
            "Real data: https://public.bybit.com/trading/BTCUSDT/ or `papertape fetch`. "
            "Regenerate the committed sample with: python scripts/make_sample.py"
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output directory (default: engine/data/sample in this repository)",
    )
    parser.add_argument("--days", type=int, default=3, help="number of UTC days (default: 3)")
    parser.add_argument(
        "--start",
        type=dt.date.fromisoformat,
        default=dt.date(2025, 6, 1),
        help="first UTC day, YYYY-MM-DD (default: 2025-06-01)",
    )
    parser.add_argument("--seed", type=int, default=7, help="RNG seed (default: 7)")
    parser.add_argument(
        "--trades-per-day",
        type=int,
        default=40_000,
        help="target mean number of trades per day; actual counts vary (default: 40000)",
    )
    parser.add_argument("--symbol", default="BTCUSDT", help="symbol (default: BTCUSDT)")
    parser.add_argument(
        "--price",
        type=float,
        default=105_000.0,
        help="mid price at the start of the first day (default: 105000)",
    )
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be >= 1")
    if args.trades_per_day < 1:
        parser.error("--trades-per-day must be >= 1")
    if args.price <= 1.0:
        parser.error("--price must be > 1")
    written = generate(
        args.out,
        args.days,
        args.start,
        args.seed,
        args.trades_per_day,
        args.symbol,
        args.price,
    )
    total = 0
    for path, n in written:
        size = path.stat().st_size
        total += size
        print(f"{path}  {n} trades  {size / 1e6:.2f} MB")
    print(f"total {total / 1e6:.2f} MB (synthetic data, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
