"""Bar files: the kline CSV format shared by ``papertape bars``, ``papertape fetch`` and
replay.

The format is one row per bar in time order with the columns ``open_time`` (ms, UTC),
``open``, ``high``, ``low``, ``close``, ``volume``, ``turnover``, ``trades``.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from engine.core import sanity
from engine.core.clock import NS_PER_MS
from engine.core.errors import UserError
from engine.core.events import Bar

KLINE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "turnover", "trades")


class BarFileError(UserError, ValueError):
    """A kline file that cannot be read."""


def is_kline_header(header: list[str]) -> bool:
    return all(column in header for column in KLINE_COLUMNS[:6])


def read_kline_csv(path: str | Path) -> pd.DataFrame:
    """Read a kline CSV, check it (:func:`checked_klines`), and return it sorted by
    ``open_time`` (ms); a file that repeats a bar is refused."""
    try:
        with warnings.catch_warnings():  # mixed-type columns are malformed rows, refused below
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            frame = pd.read_csv(path)
    except READ_ERRORS as exc:
        raise BarFileError(f"{path}: cannot read ({exc})") from None
    numeric = sorted_by_open_time(checked_klines(frame, path))
    if has_repeats(numeric["open_time"].to_numpy()):
        raise BarFileError(f"{path}: duplicate open_time rows")
    return numeric.reset_index(drop=True)


READ_ERRORS = (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, EOFError,
               zlib.error)


def checked_klines(frame: pd.DataFrame, path: str | Path, first_line: int = 2) -> pd.DataFrame:
    """``frame`` (rows of a kline CSV from file line ``first_line``) as numeric kline columns,
    in file order. A row with a missing or absurd time or price (see :mod:`engine.core.sanity`),
    a negative or infinite volume or a high/low that does not bound the bar refuses the file,
    naming its first such line."""
    missing = [c for c in KLINE_COLUMNS[:6] if c not in frame.columns]
    if missing:
        raise BarFileError(f"{path}: missing kline column(s) {', '.join(missing)}")
    if "turnover" not in frame.columns:
        frame["turnover"] = np.nan
    if "trades" not in frame.columns:
        frame["trades"] = 0
    numeric = pd.DataFrame({  # a column read as numbers already needs no conversion
        column: frame[column] if pd.api.types.is_numeric_dtype(frame[column])
        else pd.to_numeric(frame[column], errors="coerce") for column in KLINE_COLUMNS})
    prices = numeric[["open", "high", "low", "close"]]
    open_ns = numeric["open_time"].to_numpy(np.float64) * NS_PER_MS
    bad = pd.Series(sanity.bad_time(open_ns), index=numeric.index)
    bad |= pd.Series(np.any([sanity.bad_price(prices[c].to_numpy()) for c in prices], axis=0),
                     index=numeric.index)
    with np.errstate(invalid="ignore"):
        for column in ("volume", "turnover", "trades"):  # missing is allowed; negative, absurd or inf not
            values = numeric[column].to_numpy(np.float64)
            sound = (values >= 0) & (values <= sanity.MAX_BAR_AMOUNT)
            if column == "trades":
                sound &= values == np.floor(values)
            bad |= pd.Series(~np.isnan(values) & ~sound, index=numeric.index)
    bad |= (numeric["high"] < numeric[["open", "close", "low"]].max(axis=1))
    bad |= (numeric["low"] > numeric[["open", "close"]].min(axis=1))
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0]) + first_line
        raise BarFileError(f"{path}:{first}: malformed bar ({int(bad.sum())} such row(s))")
    numeric["open_time"] = numeric["open_time"].astype(np.int64)
    numeric["trades"] = numeric["trades"].fillna(0).astype(np.int64)
    numeric["turnover"] = numeric["turnover"].fillna(0.0)  # unknown: recorded as 0, never NULL
    return numeric


def sorted_by_open_time(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` in ``open_time`` order (stable); files are usually in order already, and
    then nothing is sorted."""
    if frame["open_time"].is_monotonic_increasing:
        return frame
    return frame.sort_values("open_time", kind="stable")


def has_repeats(sorted_values: np.ndarray) -> bool:
    """Whether a sorted array holds a value twice (a neighbour comparison, not a hash)."""
    return bool(len(sorted_values) > 1 and (sorted_values[1:] == sorted_values[:-1]).any())


def infer_interval_ms(open_times_ms: np.ndarray, where: str = "the klines") -> int:
    """The bar length of a sorted kline series: its most common step between bars. Every bar
    must open on that grid (bars skipped for want of trades are fine): one stray bar must not
    turn hourly bars into minute bars."""
    return infer_interval_ms_of(lambda: [np.asarray(open_times_ms, dtype=np.int64)], where)


def infer_interval_ms_of(blocks: Callable[[], Iterable[np.ndarray]], where: str = "the klines") -> int:
    """:func:`infer_interval_ms` of a series given as consecutive blocks of open times (each
    call of ``blocks`` gives them from the start), so a long cached series is read a block
    at a time instead of every page of it being mapped into the process."""
    def steps_of() -> Iterator[tuple[np.ndarray, np.ndarray, int | None]]:
        """Each non-empty block, its steps (from the block before's last bar on) and that bar."""
        last = None
        for times in blocks():
            if len(times):
                yield times, np.diff(times) if last is None else np.diff(times, prepend=last), last
                last = int(times[-1])

    step, first, regular = None, None, True
    for times, steps, last in steps_of():
        first = int(times[0]) if last is None else first
        if len(steps):
            step = int(steps[0]) if step is None else step
            regular = regular and bool((steps == step).all())
    if step is None:
        raise BarFileError(f"{where}: cannot infer the bar interval from fewer than two bars")
    if regular:
        return step
    counts: dict[int, int] = {}
    for _, steps, _ in steps_of():
        values, n = np.unique(steps, return_counts=True)
        for value, count in zip(values.tolist(), n.tolist(), strict=True):
            counts[value] = counts.get(value, 0) + count
    step = min(counts, key=lambda value: (-counts[value], value))  # the most common; ties: the shortest
    for times, _, last in steps_of():
        off = np.flatnonzero((times - first) % step)
        if len(off):
            stray = int(off[0])
            before = int(times[stray - 1]) if stray else last
            raise BarFileError(f"{where}: most bars are {step} ms apart, but the bar at open_time "
                               f"{int(times[stray])} is {int(times[stray]) - before} ms after the one "
                               "before it: one interval per file")
    return step


def bars_to_frame(bars: Iterable[Bar]) -> pd.DataFrame:
    """Bars as a DataFrame in the kline format (``open_time`` in ms)."""
    rows = [
        (b.open_time // NS_PER_MS, b.open, b.high, b.low, b.close, b.volume, b.turnover, b.trades)
        for b in bars
    ]
    frame = pd.DataFrame(rows, columns=list(KLINE_COLUMNS))
    return frame.astype({"open_time": np.int64, "trades": np.int64})


def write_kline_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write bars in the kline format, full float precision, no index."""
    frame[list(KLINE_COLUMNS)].to_csv(path, index=False, float_format="%.10g")

