"""Attention-model forecasting for papertape: attention modules, encoder, features,
training. Importing the package is cheap; torch loads on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["build_attention"]


def build_attention(kind: str, d_model: int, n_heads: int, seq_len: int, **options) -> nn.Module:
    """Build attention ``kind`` mapping ``[batch, seq, d_model]`` to the same shape."""
    from models.attention import build_attention as build

    return build(kind, d_model, n_heads, seq_len, **options)
