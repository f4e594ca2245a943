"""papertape's runtime: events, bus, clock, bars, broker, ledger, metrics, reports, CLI."""

__version__ = "0.1.0"
