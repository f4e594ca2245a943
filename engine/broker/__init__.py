"""The simulated venue: instruments, costs, account and matching.

May import: engine.core.
"""

from engine.broker.account import Account, Position
from engine.broker.broker import Order, SimulatedBroker
from engine.broker.costs import FeeModel, FillModel, LatencyModel, SlippageModel
from engine.broker.instruments import Instrument, InstrumentBook, UnknownInstrument

__all__ = [
    "Account", "FeeModel", "FillModel", "Instrument", "InstrumentBook", "LatencyModel",
    "Order", "Position", "SimulatedBroker", "SlippageModel", "UnknownInstrument",
]
