"""The broker's copy of an order, the order types and times in force it takes, and the
statuses after which an order is done."""

from __future__ import annotations

from array import array
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


class OrderBook:
    """Every order the venue was sent, by client order id: the open ones (pending or active)
    whole, the finished ones as a code of their ``(symbol, status)`` only, so a long run does
    not keep every order it ever filled (a 10-symbol 10M-bar backtest sends 390,000). An id
    numbered as the strategy host numbers them (``<prefix>-<N>``) keeps its code in an array
    indexed by N, two bytes an order; any other id, a dict entry (about 110 bytes)."""

    def __init__(self) -> None:
        self.open: dict[str, Order] = {}
        self._pairs: list[tuple[str, str]] = [("", "unknown")]  # by code; 0: not known
        self._codes: dict[tuple[str, str], int] = {}
        self._numbered: dict[str, array] = {}  # per prefix, each N's code
        self._other: dict[str, int] = {}

    def _code(self, order: Order) -> int:
        pair = (order.symbol, order.status)
        code = self._codes.get(pair)
        if code is None:
            code = self._codes[pair] = len(self._pairs)
            self._pairs.append(pair)
        return code

    def _finished(self, order_id: str) -> int:
        """The code of a finished order's ``(symbol, status)``; 0 for an id not finished."""
        prefix, n = _numbered(order_id)
        if n is not None:
            codes = self._numbered.get(prefix)
            if codes is not None and n < len(codes) and codes[n]:
                return codes[n]
        return self._other.get(order_id, 0)

    def _keep(self, order: Order) -> None:
        code = self._code(order)
        prefix, n = _numbered(order.id)
        if n is not None and code <= 0xFFFF:
            codes = self._numbered.setdefault(prefix, array("H"))
            if n < len(codes) + NUMBER_GAP:  # an id far past the last stays out of the array
                if n >= len(codes):
                    codes.extend(bytes(2 * (n + 1 - len(codes))))
                codes[n] = code
                return
        self._other[order.id] = code

    def __contains__(self, order_id: str) -> bool:
        return order_id in self.open or self._finished(order_id) != 0

    def add(self, order: Order) -> None:
        """Take ``order`` (a restored one that is no longer open goes straight to finished)."""
        if order.status in ("pending", "active"):
            self.open[order.id] = order
        else:
            self._keep(order)

    def get(self, order_id: str) -> Order | None:
        """The order if it is still open."""
        return self.open.get(order_id)

    def retire(self, order: Order) -> None:
        """``order`` reached its final status: keep only its symbol and that status."""
        self.open.pop(order.id, None)
        self._keep(order)

    def status(self, order_id: str) -> str:
        order = self.open.get(order_id)
        if order is not None:
            return order.status
        return self._pairs[self._finished(order_id)][1]

    def symbol(self, order_id: str) -> str | None:
        order = self.open.get(order_id)
        if order is not None:
            return order.symbol
        code = self._finished(order_id)
        return self._pairs[code][0] if code else None


NUMBER_GAP = 1 << 16  # how far past the highest N so far an id may be numbered into the array


def _numbered(order_id: str) -> tuple[str, int | None]:
    """``(prefix, N)`` of an id ``<prefix>-<N>`` (N in plain decimal: no sign, no leading
    zero), else ``(order_id, None)``."""
    prefix, dash, digits = order_id.rpartition("-")
    if dash and digits.isascii() and digits.isdigit() and (digits[0] != "0" or digits == "0"):
        return prefix, int(digits)
    return order_id, None


def cap_at_limit(order: Order, price: float) -> float:
    """A taker limit order never fills beyond its limit, slippage included."""
    if order.type != "limit":
        return price
    return min(price, order.price) if order.side > 0 else max(price, order.price)
