"""The simulated broker built from the ``[broker]`` and ``[account]`` settings: one place
that turns the config into fee, slippage, latency and fill models with seeded randomness,
for sessions, benchmarks and tests alike."""

from __future__ import annotations

import numpy as np

from engine.broker.account import Account
from engine.broker.broker import SimulatedBroker
from engine.broker.costs import FeeModel, FillModel, LatencyModel, MarketFees, SlippageModel
from engine.broker.instruments import InstrumentBook, UnknownInstrument
from engine.core.bus import Bus
from engine.core.config import AccountSection, BrokerSection
from engine.core.symbols import split_market
from engine.core.typed import ConfigError


def broker_from_config(bus: Bus, broker: BrokerSection, account: AccountSection, *, category: str,
                       match_on: str = "trades", seed: int = 0,
                       symbols: tuple[str, ...] = ()) -> SimulatedBroker:
    """A broker on ``bus`` for ``category``; its latency and fill models draw from two
    streams spawned from ``seed``. Each of ``symbols`` must be a known instrument."""
    seeds = np.random.SeedSequence(seed).spawn(2)
    try:
        instruments = InstrumentBook.load(broker.instruments)
        for symbol in symbols:
            instruments.get(category, symbol)
        wallet = Account(category, account.cash, account.leverage, broker.maintenance_margin)
    except (UnknownInstrument, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    fees = FeeModel.for_category(category, broker.maker_fee, broker.taker_fee)
    if any(split_market(s, category)[0] != category for s in symbols):  # a linear run with spot markets
        fees = MarketFees(fees, FeeModel.for_category("spot", broker.maker_fee, broker.taker_fee))
    return SimulatedBroker(
        bus, wallet, instruments, fees=fees,
        slippage=SlippageModel(broker.slippage_bps, broker.impact),
        latency=LatencyModel(np.random.default_rng(seeds[0]), broker.latency_ms,
                             broker.latency_jitter_ms, broker.cancel_latency_ms),
        fill_model=FillModel(np.random.default_rng(seeds[1]),
                             broker.touch_fill_probability, broker.max_participation),
        match_on=match_on, fill_at=broker.fill_at, funding_rate=broker.funding_rate,
    )
