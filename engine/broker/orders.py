"""The broker's copy of an order, the order types and times in force it takes, and the
statuses after which an order is done."""

from __future__ import annotations

from dataclasses import dataclass

ORDER_TYPES = ("market", "limit", "stop")
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "PostOnly")
FINAL = ("rejected", "canceled", "expired", "filled")
QTY_EPS = 1e-12  # quantities closer than this are equal


@dataclass(eq=False)
class Order:
    """The broker's copy of an order and how far it got."""

    id: str
    strategy_id: str
    symbol: str
    side: int
    qty: float
    type: str
    price: float | None
    trigger: float | None
    tif: str
    reduce_only: bool
    ts_sent: int
    arrival: int = 0
    filled: float = 0.0
    status: str = "pending"
    marketable: bool = False
    triggered: bool = False
    seen_data: bool = False

    @property
    def remaining(self) -> float:
        return self.qty - self.filled

    @property
    def takes(self) -> bool:
        """True when the order executes as taker (market, triggered stop, marketable limit)."""
        return self.type == "market" or self.triggered or self.marketable
