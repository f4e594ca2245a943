"""The plugin API (:class:`Strategy`, :class:`StrategyConfig`) and the bundled strategies.

May import: engine (its public modules) and models.
"""

from strategies.base import Strategy, StrategyConfig

__all__ = ["Strategy", "StrategyConfig"]
