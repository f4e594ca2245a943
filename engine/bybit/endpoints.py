"""Bybit's public endpoints (the mainnet websocket and REST hosts, the trade archive) and
its market categories."""

MAINNET_WS = "wss://stream.bybit.com"
CATEGORIES = ("linear", "inverse", "spot")
MAINNET_REST = "https://api.bybit.com"
ARCHIVE_URL = "https://public.bybit.com"


def public_ws_endpoint(url: str, category: str) -> str:
    """The public websocket endpoint of ``category`` from ``--ws-url``: a base URL
    (``wss://stream.bybit.com``) gets ``/v5/public/<category>``; the full endpoint, as Bybit's
    docs and pybit write it (``wss://stream.bybit.com/v5/public/linear``), is used as given,
    and one of another category is refused (ValueError), since its topics differ."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"--ws-url {url!r} is not a websocket URL (ws:// or wss://host)")
    path = parts.path.rstrip("/")
    base = f"{parts.scheme}://{parts.netloc}"
    if path in ("", "/v5", "/v5/public"):
        return f"{base}/v5/public/{category}"
    if path.startswith("/v5/public/"):
        given = path.removeprefix("/v5/public/")
        if given != category:
            raise ValueError(f"--ws-url {url} is the {given} endpoint; a {category} run needs "
                             f"{base}/v5/public/{category} (or the base URL {base})")
    return f"{base}{path}" + (f"?{parts.query}" if parts.query else "")
