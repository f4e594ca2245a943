"""The run configuration: ``config.toml`` loaded into frozen typed sections.

Every section and key is declared here with its default, so a missing file or table means
"use the defaults" and an unknown key is an error that names it. Command-line flags and
``--set section.key=value`` override the file.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from engine.core.clock import NS_PER_MS, NS_PER_S
from engine.core.symbols import SYMBOL, market_name
from engine.core.typed import ConfigError, build, parse_assignments

SAMPLE_DATA = str(Path(__file__).parent.parent / "data" / "sample" / "BTCUSDT*.csv.gz")


@dataclass(frozen=True)
class RunSection:
    """What to replay: data files or globs, the symbol for kline files, and the bar interval
    (None: 1m bars from trades, the files' own interval for klines)."""

    data: tuple[str, ...] = (SAMPLE_DATA,)
    symbol: str = "BTCUSDT"
    symbols: tuple[str, ...] = ()  # a portfolio: the symbols one run trades (symbol is then unused)
    category: Literal["linear", "inverse", "spot"] = "linear"
    interval: str | None = None
    timeframes: tuple[str, ...] = ()  # higher timeframes folded from the interval's bars (5m, 1h)
    start: str | None = None
    end: str | None = None
    seed: int = 0

    def validate(self) -> None:
        if not SYMBOL.fullmatch(self.symbol):
            raise ValueError(f"symbol {self.symbol[:60]!r} is not a Bybit symbol (upper-case letters and "
                             "digits, e.g. BTCUSDT)")
        for symbol in self.symbols:
            if not isinstance(symbol, str):
                raise ValueError(f"symbols: {str(symbol)[:60]!r} is not a Bybit symbol (upper-case "
                                 "letters and digits, e.g. BTCUSDT)")
        if self.symbols and len(set(self.portfolio)) != len(self.symbols):
            raise ValueError("symbols: a symbol is listed twice")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    @property
    def portfolio(self) -> tuple[str, ...]:
        """The names of what the run trades: ``symbols`` (``spot:SYMBOL`` for a spot market of a
        linear run, see :func:`market_name`), or ``symbol`` alone."""
        if not self.symbols:
            return (self.symbol,)
        return tuple(market_name(s, self.category, "symbols") for s in self.symbols)


@dataclass(frozen=True)
class BarsSection:
    """Bar closing policies (see ``engine.bars.aggregator``)."""

    close_delay_ms: int = 250
    empty: Literal["flat", "skip"] = "flat"
    first_partial: Literal["skip", "keep"] = "skip"

    def validate(self) -> None:
        if self.close_delay_ms < 0:
            raise ValueError("close_delay_ms must be >= 0")


@dataclass(frozen=True)
class StrategySection:
    """Which strategy runs, its parameters, and what a raising callback does."""

    name: str = "sma_cross"
    params: dict[str, Any] = field(default_factory=dict)
    on_error: Literal["stop", "skip"] = "stop"


@dataclass(frozen=True)
class AccountSection:
    """The simulated account's starting cash (quote currency) and leverage."""

    cash: float = 10_000.0
    leverage: float = 1.0

    def validate(self) -> None:
        if self.cash <= 0:
            raise ValueError("cash must be positive")
        if not 0 < self.leverage <= 100:
            raise ValueError("leverage must be in (0, 100]")


@dataclass(frozen=True)
class BrokerSection:
    """Costs and realism of the simulated venue. Fees are fractions of notional; None
    takes Bybit's published default for the category (BYBIT.md section 10)."""

    taker_fee: float | None = None
    maker_fee: float | None = None
    slippage_bps: float = 0.0
    impact: float = 0.0
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    cancel_latency_ms: float | None = None
    fill_at: Literal["next", "close"] = "next"
    touch_fill_probability: float = 1.0
    max_participation: float = 1.0
    maintenance_margin: float = 0.005
    funding_rate: float = 0.0
    instruments: str | None = None

    def validate(self) -> None:
        for name in ("taker_fee", "maker_fee", "slippage_bps", "impact", "latency_ms", "latency_jitter_ms",
                     "cancel_latency_ms"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not 0 <= self.touch_fill_probability <= 1:
            raise ValueError("touch_fill_probability must be in [0, 1]")
        if not 0 < self.max_participation <= 1:
            raise ValueError("max_participation must be in (0, 1]")


@dataclass(frozen=True)
class LedgerSection:
    """Where runs are recorded (a SQLite path or any SQLAlchemy URL) and the batch size."""

    path: str = "papertape.db"
    batch_rows: int = 50_000
    flush_seconds: float = 1.0

    def validate(self) -> None:
        if self.batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {self.batch_rows}")
        if self.flush_seconds <= 0:
            raise ValueError(f"flush_seconds must be > 0, got {self.flush_seconds:g}")


@dataclass(frozen=True)
class SweepSection:
    """Defaults for ``papertape sweep`` (its flags override them) and its search space:
    ``[sweep.space]`` maps a parameter to a list of values or a spec string (``5:60:5``,
    ``0.001~0.05:log``); ``[sweep.space.train]`` sweeps training settings and ``[sweep.train]``
    fixes them (the model strategy's, as ``--grid train.KEY`` and ``--train``)."""

    sampler: str | None = None
    trials: int | None = None
    seed: int | None = None
    batch: int = 8
    objective: str = "sharpe"
    min_trades: int = 0
    constraints: tuple[str, ...] = ()
    workers: int = 0
    holdout: float | None = None
    walk_forward: int | None = None
    top: int = 5
    space: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)  # fixed training settings (strategy model)
    checkpoints: str | None = None


@dataclass(frozen=True)
class Config:
    run: RunSection = field(default_factory=RunSection)
    bars: BarsSection = field(default_factory=BarsSection)
    strategy: StrategySection = field(default_factory=StrategySection)
    account: AccountSection = field(default_factory=AccountSection)
    broker: BrokerSection = field(default_factory=BrokerSection)
    ledger: LedgerSection = field(default_factory=LedgerSection)
    sweep: SweepSection = field(default_factory=SweepSection)


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> Config:
    """Read ``path`` (defaults only when None), apply ``section.key=value`` overrides, and
    build a :class:`Config`; every problem is a one-line :class:`ConfigError`."""
    data: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except OSError as exc:
            raise ConfigError(f"config file {path}: cannot read ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a TOML file (not UTF-8 text)") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for key, value in parse_assignments(overrides or [], "--set").items():
        section, dot, name = key.partition(".")
        if not dot or not name:
            raise ConfigError(f"--set {key}: use section.key=value, e.g. broker.taker_fee=0.0005")
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"--set {key}: [{section}] is not a table")
        if section == "strategy" and name.startswith("params."):
            target.setdefault("params", {})[name.removeprefix("params.")] = value
        else:
            target[name] = value
    sections = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(data) - sections)
    if unknown:
        known = ", ".join(sorted(sections))
        raise ConfigError(f"{where}: unknown section [{unknown[0]}] (known: {known})")
    types = typing.get_type_hints(Config)
    built = {name: build(types[name], table, f"{where} [{name}]") for name, table in data.items()}
    return Config(**built)


def parse_time(text: str | None, what: str) -> int | None:
    """``2025-06-01``, ``2025-06-01T12:00``, ``2025-06-01 12:00:00`` (UTC unless an offset
    is given) or epoch milliseconds, as UTC nanoseconds; None stays None."""
    if text is None or text == "":
        return None
    value = str(text).strip()
    if value.isdigit():
        return int(value) * NS_PER_MS
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a date (use YYYY-MM-DD[THH:MM[:SS]])") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * NS_PER_S + moment.microsecond * 1000
