"""Exact softmax attention through ``torch.nn.functional.scaled_dot_product_attention``:
the reference every approximation is measured against."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import models.onednn as onednn
from models.attention.base import AttentionBase, masked_softmax


class FullAttention(AttentionBase):
    """Multi-head softmax attention; SDPA picks the fused CPU/CUDA kernel."""

    def __init__(self, d_model: int, n_heads: int, seq_len: int | None = None) -> None:
        super().__init__(d_model, n_heads)
        self.to_qkv = nn.Linear(d_model, 3 * d_model, bias=False)

    def attend(self, x: torch.Tensor, mask: torch.Tensor | None, return_weights: bool, last_only: bool):
        if last_only:
            w = self.to_qkv.weight
            q = self.split(onednn.linear(x[:, -1:], w[: self.d_model]))
            k, v = map(self.split, onednn.linear(x, w[self.d_model :]).chunk(2, dim=-1))
        else:
            q, k, v = map(self.split, onednn.linear(x, self.to_qkv.weight).chunk(3, dim=-1))
        keep = None if mask is None else mask[:, None, None, :]
        if return_weights:
            weights = masked_softmax(q @ k.transpose(-1, -2) * self.d_head**-0.5, keep)
            return self.merge(weights @ v), weights
        return self.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=keep))
