"""Higher timeframes of a run: each symbol's 5m or 1h bars folded from its run bars (1m, say)
as they close. A higher bar closes with the last run bar it holds, at that bar's clock, so it
keeps every rule of the run's bars (the close delay, bars held over a feed gap, late trades)
and holds nothing stamped after it. A window that opens before ``partial_before`` (where the
run's data was cut, as the aggregator's ``start_ns``: a ``--start``, a live start or a resume
inside it) is partial and left out; without it (a replay of files from their own beginning)
every window is kept, as a bar of that interval would be. A window whose last run bar never
comes (``[bars] empty = "skip"``) closes at the next run bar after it, and reaches the strategy
just before that bar does (:meth:`TimeframeBars.ended_before`). Flat bars of
intervals without trades set no prices, as a bar of the longer interval would not."""

from __future__ import annotations

from collections.abc import Sequence

from engine.bars.aggregator import BarSpec, parse_interval
from engine.bars.bar_sums import TURNOVER_SCALE, VOLUME_SCALE
from engine.core.events import Bar
from engine.core.typed import ConfigError


def check_timeframes(labels: Sequence[str], base: BarSpec) -> tuple[BarSpec, ...]:
    """The specs of ``labels`` (``--timeframes 5m,1h``): time intervals, each a whole multiple
    of the run's interval ``base`` and longer, none twice; else a :class:`ConfigError`."""
    specs: list[BarSpec] = []
    for label in labels:
        if not isinstance(label, str):
            raise ConfigError(f"timeframes: {str(label)[:40]!r} is not an interval like 5m or 1h")
        try:
            spec = parse_interval(label)
        except ConfigError as exc:  # which setting it came from: the run has its --interval too
            raise ConfigError(f"timeframes: {exc}") from None
        if not (spec.is_time and base.is_time):
            raise ConfigError(f"timeframes: {label} needs time bars on both sides (the run's interval is "
                              f"{base.label}); tick, volume and value bars have no higher timeframe")
        if spec.size <= base.size or spec.size % base.size or (spec.offset_ns - base.offset_ns) % base.size:
            raise ConfigError(f"timeframes: {label} is not a whole multiple of the run's interval "
                              f"{base.label} longer than it")
        if any(s.label == spec.label for s in specs):
            raise ConfigError(f"timeframes: {label} is listed twice")
        specs.append(spec)
    return tuple(specs)


class TimeframeBars:
    """Folds each symbol's run bars into its bars of every higher timeframe; :meth:`on_bar`
    returns the higher bars a run bar closes, shortest timeframe first."""

    def __init__(self, specs: Sequence[BarSpec], partial_before: int | None = None,
                 turnover_scale: int = TURNOVER_SCALE) -> None:
        self.labels = tuple(spec.label for spec in specs)  # as listed
        self.specs = tuple(sorted(specs, key=lambda s: s.size))
        self.partial_before = partial_before
        self.turnover_scale = turnover_scale  # the aggregator's units (INVERSE_TURNOVER_SCALE: inverse)
        self._open: dict[tuple[str, str], list] = {}  # (symbol, label) -> the window being folded

    def ended_before(self, bar: Bar) -> list[Bar]:
        """The higher bars of ``bar.symbol`` whose windows ended before ``bar`` opens, their last
        run bar never having come (``[bars] empty = "skip"``): they go to the strategy before
        ``bar`` does, so it sees every bar in the order of its close."""
        closed: list[Bar] = []
        for spec in self.specs:
            key = (bar.symbol, spec.label)
            window = self._open.get(key)
            if window is not None and window[1] <= bar.open_time:
                self._close(key, self._open.pop(key), bar.ts_event, bar.ts_init, closed)
        return closed

    def on_bar(self, bar: Bar) -> list[Bar]:
        """The higher bars ``bar`` closes (with any :meth:`ended_before` it left undelivered)."""
        closed = self.ended_before(bar)
        symbol, _, open_time, close_time, o, h, lo, c, volume, turnover, trades, ts_event, ts_init = bar
        # summed in the aggregator's integer units, so a higher bar's volume and turnover are the
        # bits of a bar of that interval, not a float sum of its run bars' that differs in the last
        units = round(volume * VOLUME_SCALE), round(turnover * self.turnover_scale)
        for spec in self.specs:
            step, key = int(spec.size), (symbol, spec.label)
            start = open_time - (open_time - spec.offset_ns) % step
            window = self._open.pop(key, None)
            empty = volume == 0 and trades == 0  # a flat bar of an interval without trades
            if window is None:
                keep = self.partial_before is None or start >= self.partial_before
                window = [start, start + step, keep, o, h, lo, c, *units, trades, not empty]
            elif not empty:
                if window[10]:
                    window[4], window[5], window[6] = max(window[4], h), min(window[5], lo), c
                else:  # the window's first trades: a flat bar before them sets none of its prices
                    window[3], window[4], window[5], window[6], window[10] = o, h, lo, c, True
                window[7] += units[0]
                window[8] += units[1]
                window[9] += trades
            if close_time >= window[1]:
                self._close(key, window, ts_event, ts_init, closed)
            else:
                self._open[key] = window
        return closed

    def _close(self, key: tuple[str, str], window: list, ts_event: int, ts_init: int,
               closed: list[Bar]) -> None:
        start, end, keep, o, h, lo, c, volume, turnover, trades, _ = window
        if keep:
            closed.append(Bar(key[0], key[1], start, end, o, h, lo, c, volume / VOLUME_SCALE,
                              turnover / self.turnover_scale, trades, ts_event, ts_init))
