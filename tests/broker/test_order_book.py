"""The broker's order book: what it answers about open and finished orders, for ids numbered
as the strategy host numbers them and for any other id."""

from __future__ import annotations

from engine.broker.orders import NUMBER_GAP, Order, OrderBook


def order(order_id: str, symbol: str = "BTCUSDT", status: str = "pending") -> Order:
    made = Order(order_id, "s", symbol, 1, 0.1, "market", None, None, "GTC", False, 0)
    made.status = status
    return made


def test_open_and_finished_orders_are_known_with_their_symbol_and_status():
    book = OrderBook()
    first, second = order("sma_cross-1"), order("sma_cross-2", "ETHUSDT")
    book.add(first)
    book.add(second)
    assert "sma_cross-1" in book and book.get("sma_cross-1") is first
    first.status = "filled"
    book.retire(first)
    assert book.get("sma_cross-1") is None
    assert "sma_cross-1" in book
    assert book.status("sma_cross-1") == "filled" and book.symbol("sma_cross-1") == "BTCUSDT"
    assert book.status("sma_cross-2") == "pending" and book.symbol("sma_cross-2") == "ETHUSDT"
    second.status = "canceled"
    book.retire(second)
    assert book.status("sma_cross-2") == "canceled" and book.symbol("sma_cross-2") == "ETHUSDT"


def test_ids_never_sent_are_unknown():
    book = OrderBook()
    book.retire(order("sma_cross-5", status="rejected"))
    for unknown in ("sma_cross-4", "sma_cross-6", "sma_cross-05", "other-5", "sma_cross-", "nope", ""):
        assert unknown not in book
        assert book.status(unknown) == "unknown" and book.symbol(unknown) is None
    assert book.status("sma_cross-5") == "rejected"


def test_ids_of_any_form_are_kept():
    book = OrderBook()
    ids = ["mine", "a-b", "x-007", "x-+7", "x-\u0967", "x-0", "x-1", f"x-{NUMBER_GAP * 4}", "-3", "x-1.5"]
    for k, order_id in enumerate(ids):
        book.retire(order(order_id, f"S{k}USDT", "expired" if k % 2 else "filled"))
    for k, order_id in enumerate(ids):
        assert order_id in book
        assert book.symbol(order_id) == f"S{k}USDT"
        assert book.status(order_id) == ("expired" if k % 2 else "filled")
    assert "x-2" not in book and "x-7" not in book


def test_restored_finished_orders_go_straight_to_finished():
    book = OrderBook()
    book.add(order("sma_cross-3", status="done"))
    book.add(order("sma_cross-4", status="active"))
    assert book.get("sma_cross-3") is None and book.status("sma_cross-3") == "done"
    assert book.get("sma_cross-4") is not None and book.status("sma_cross-4") == "active"
