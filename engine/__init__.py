"""papertape's runtime, one package per stage of the data path:
feeds -> bars -> strategy -> broker -> ledger -> analysis, wired by run and driven by cli.

Layers, lowest first (each package's ``__init__`` names what it may import):
core; bars, broker; bybit; feeds, strategy; ledger; analysis; run; commands; cli.
``loopback`` is a service beside them that nothing in the runtime imports. The engine never
imports ``strategies``, ``models`` or ``workflows`` by name: strategies load through the
``papertape.strategies`` entry points, extra verbs through ``papertape.commands``.
"""

__version__ = "0.1.0"
