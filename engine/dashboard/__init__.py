"""The dashboard: a read-only web view over the ledger (runs, one run's charts, runs compared),
with series downsampled on the server to the chart's width. It sits above analysis (metrics,
the vendored chart library) and below run (a live session may serve it in its own process).

May import: engine.core, engine.ledger, engine.analysis.
"""
