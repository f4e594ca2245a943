"""Multi-head plumbing shared by every attention module: head split/merge, output
projection and the common call signature ``forward(x, mask=None, return_weights=False, last_only=False)``.

``x`` is ``[batch, seq, d_model]``; ``mask`` is an optional boolean key-padding mask
``[batch, seq]`` where True marks a real token (the convention of SDPA's boolean masks).
With ``return_weights=True`` the module also returns its attention weights (or, for the
approximations, the matrix they stand for) for inspection; that path materialises them.
With ``last_only=True`` the module returns ``[batch, 1, d_model]``: the output of the last
position only, the one the encoder's head reads, attending to every key as usual but
without computing the other positions' queries.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

import models.onednn as onednn

NEG = -1e9  # score of a masked key: finite, so a fully masked row stays NaN-free


class AttentionBase(nn.Module, ABC):
    """Output projection and reshaping helpers; subclasses produce per-head outputs."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.to_out = nn.Linear(d_model, d_model)

    def split(self, t: torch.Tensor) -> torch.Tensor:
        """``[b, n, d_model]`` -> ``[b, heads, n, d_head]``."""
        b, n, _ = t.shape
        return t.view(b, n, self.n_heads, self.d_head).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_weights: bool = False,
        last_only: bool = False,
    ):
        """The attention of ``x``: ``[b, L, d]``, ``[b, 1, d]`` with ``last_only``, and the
        weights as well with ``return_weights`` (see the module docstring)."""
        if return_weights and last_only:
            raise ValueError("return_weights needs every position; it cannot be combined with last_only")
        return self.attend(x, mask, return_weights, last_only)

    @abstractmethod
    def attend(self, x: torch.Tensor, mask: torch.Tensor | None, return_weights: bool, last_only: bool):
        """What :meth:`forward` returns, computed by each kind of attention."""

    def merge(self, t: torch.Tensor) -> torch.Tensor:
        """``[b, heads, n, d_head]`` -> output projection of ``[b, n, d_model]``."""
        b, _, n, _ = t.shape
        return self.project_out(t.transpose(1, 2).reshape(b, n, self.d_model))

    def project_out(self, merged: torch.Tensor) -> torch.Tensor:
        """The output projection of the merged heads ``[b, n, d_model]``."""
        return onednn.linear(merged, self.to_out.weight, self.to_out.bias)


def masked_softmax(scores: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last axis with positions where ``keep`` is False excluded."""
    if keep is not None:
        scores = scores.masked_fill(~keep, NEG)
    return scores.softmax(-1)
