"""``/v5/market/instruments-info`` items rendered from :class:`Instrument` rules, in the
shapes of Bybit's documented example responses (BYBIT.md section 11).

Fields the rules file does not hold are filled with the values of Bybit's BTCUSDT examples
(funding interval and rate bounds, price-limit ratios) or derived from the rules (price
scale from the tick size, maximum price 19,999,998 ticks as in the example); the spot
``quotePrecision`` and ``maxOrderAmt`` are placeholders. None of these is used by papertape.
"""

from __future__ import annotations

import re

from engine.broker.instruments import Instrument
from engine.bybit.render import num


def decimals(step: float) -> int:
    """How many decimals a step such as 0.001 has."""
    text = num(step)
    return len(text.split(".")[1]) if "." in text else 0


def _fixed(value: float, places: int) -> str:
    return f"{value:.{places}f}"


def contract_type(inst: Instrument) -> str:
    """``LinearPerpetual``, ``LinearFutures``, ``InversePerpetual`` or ``InverseFutures``."""
    dated = bool(re.search(r"-\d{2}[A-Z]{3}\d{2}$|[FGHJKMNQUVXZ]\d{2}$", inst.symbol))
    return ("Linear" if inst.category == "linear" else "Inverse") + ("Futures" if dated else "Perpetual")


def render(inst: Instrument, symbol_id: int) -> dict:
    """One list item for ``inst`` in its category's shape."""
    price_scale, qty_scale = decimals(inst.tick_size), decimals(inst.qty_step)
    if inst.category == "spot":
        return {
            "symbolId": symbol_id, "symbol": inst.symbol, "baseCoin": inst.base, "quoteCoin": inst.quote,
            "innovation": "0", "status": "Trading", "marginTrading": "none", "stTag": "0",
            "lotSizeFilter": {
                "basePrecision": num(inst.qty_step), "quotePrecision": "0.00000001",
                "minOrderQty": num(inst.min_qty), "maxOrderQty": num(inst.max_qty),
                "minOrderAmt": num(inst.min_notional), "maxOrderAmt": "8000000",
                "maxLimitOrderQty": num(inst.max_qty), "maxMarketOrderQty": num(inst.max_market_qty),
                "postOnlyMaxLimitOrderSize": num(5 * inst.max_qty),
            },
            "priceFilter": {"tickSize": num(inst.tick_size)},
            "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
            "symbolType": "",
        }
    settle = inst.quote if inst.category == "linear" else inst.base
    return {
        "symbol": inst.symbol, "symbolId": symbol_id, "contractType": contract_type(inst),
        "status": "Trading", "baseCoin": inst.base, "quoteCoin": inst.quote, "launchTime": "0",
        "deliveryTime": "0", "deliveryFeeRate": "", "priceScale": str(price_scale),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": _fixed(inst.max_leverage, 2),
                           "leverageStep": "0.01"},
        "priceFilter": {"minPrice": _fixed(inst.tick_size, price_scale),
                        "maxPrice": _fixed(inst.tick_size * 19_999_998, price_scale),
                        "tickSize": _fixed(inst.tick_size, price_scale)},
        "lotSizeFilter": {
            "maxOrderQty": _fixed(inst.max_qty, qty_scale),
            "minOrderQty": _fixed(inst.min_qty, qty_scale),
            "qtyStep": _fixed(inst.qty_step, qty_scale),
            "postOnlyMaxOrderQty": _fixed(inst.max_qty, qty_scale),
            "maxMktOrderQty": _fixed(inst.max_market_qty, qty_scale),
            "minNotionalValue": num(inst.min_notional),
        },
        "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": settle, "copyTrading": "none",
        "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375", "isPreListing": False,
        "preListingInfo": None,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        "symbolType": "",
    }
