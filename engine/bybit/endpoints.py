"""Bybit's public endpoints (the mainnet websocket and REST hosts, the trade archive) and
its market categories."""

MAINNET_WS = "wss://stream.bybit.com"
CATEGORIES = ("linear", "inverse", "spot")
MAINNET_REST = "https://api.bybit.com"
ARCHIVE_URL = "https://public.bybit.com"
