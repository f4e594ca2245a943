"""The simulated venue: instruments, costs, account and matching.

May import: engine.core.
"""

from engine.broker.account import Account, Position
from engine.broker.broker import SimulatedBroker
from engine.broker.costs import FeeModel, FillModel, LatencyModel, SlippageModel
from engine.broker.instruments import Instrument, InstrumentBook, UnknownInstrument
from engine.broker.orders import Order

__all__ = [
    "Account", "FeeModel", "FillModel", "Instrument", "InstrumentBook", "LatencyModel",
    "Order", "Position", "SimulatedBroker", "SlippageModel", "UnknownInstrument",
]
