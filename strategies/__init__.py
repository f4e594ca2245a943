"""The strategy plugin API and the bundled strategies."""

from strategies.base import Strategy, StrategyConfig
from strategies.registry import available_strategies, find_strategy

__all__ = ["Strategy", "StrategyConfig", "available_strategies", "find_strategy"]
