"""Live: the Bybit public websocket, the REST client, and the feed that turns both into
events, watches its health and backfills gaps."""
