"""Attention modules with one call signature,
``module(x, mask=None, return_weights=False, last_only=False)`` mapping ``[batch, seq,
d_model]`` to the same shape (``[batch, 1, d_model]`` with ``last_only``), and the factory
that builds them."""

from __future__ import annotations

from torch import nn

from models.attention.full import FullAttention
from models.attention.linformer import LinformerAttention
from models.attention.nystrom import NystromAttention
from models.attention.reformer import LSHAttention
from models.attention_options import check_options

ATTENTIONS: dict[str, type[nn.Module]] = {
    "full": FullAttention,
    "linformer": LinformerAttention,
    "reformer": LSHAttention,
    "nystrom": NystromAttention,
}


def build_attention(kind: str, d_model: int, n_heads: int, seq_len: int, **options) -> nn.Module:
    """Build the attention ``kind`` (full, linformer, reformer, nystrom) with its options,
    refusing unknown options and bad values first (:mod:`models.attention_options`)."""
    check_options(kind, options)
    return ATTENTIONS[kind](d_model, n_heads, seq_len, **options)
