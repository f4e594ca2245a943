"""Linformer attention (Wang et al. 2020): keys and values are projected along the
sequence axis from length n to k by learned matrices E and F, so attention costs O(n k).

E and F act on the token axis and the key/value weights on the feature axis; the
projections have no bias, so ``E (x W_k) == (E x) W_k`` and E is applied to the input
first, which is cheaper. Inputs shorter than the configured ``seq_len`` use the first
``L`` columns of E and F, exactly as if the input were zero-padded to ``seq_len``;
longer inputs are refused. Padded (masked) tokens are zeroed before projection so they
cannot leak into the projected keys and values.

``k`` defaults to ``min(128, seq_len)``. A ``k`` above ``seq_len`` projects to more rows
than there are tokens and saves nothing: training refuses it
(:func:`models.attention_options.check_options`), but the module still builds, so
checkpoints made with one still load.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import models.onednn as onednn
from models.attention.base import AttentionBase


class LinformerAttention(AttentionBase):
    """Multi-head Linformer; E/F shared between heads by default, E == F with ``share_kv``."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        seq_len: int,
        k: int | None = None,
        share_kv: bool = False,
        share_heads: bool = True,
    ) -> None:
        super().__init__(d_model, n_heads)
        self.seq_len = seq_len
        self.k = min(128, seq_len) if k is None else k
        self.share_heads = share_heads
        self.to_q = nn.Linear(d_model, d_model, bias=False)
        self.to_k = nn.Linear(d_model, d_model, bias=False)
        self.to_v = nn.Linear(d_model, d_model, bias=False)
        shape = (self.k, seq_len) if share_heads else (n_heads, self.k, seq_len)
        self.proj_k = nn.Parameter(torch.randn(shape) * seq_len**-0.5)
        self.proj_v = None if share_kv else nn.Parameter(torch.randn(shape) * seq_len**-0.5)

    def _project(self, x: torch.Tensor, proj: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
        """Sequence projection then feature projection: ``[b, L, d]`` -> ``[b, h, k, d_head]``;
        one window in inference mode takes oneDNN's GEMM for ``E x`` (6.9 -> 6.2 ms at 16,384
        tokens on one thread)."""
        proj = proj[..., : x.shape[1]]
        if self.share_heads and x.shape[0] == 1 and onednn.usable(x):  # a window at a time
            return self.split(lin(onednn.gemm(proj, x[0].t())[None]))
        if self.share_heads:
            return self.split(lin(torch.einsum("kn,bnd->bkd", proj, x)))
        w = lin.weight.view(self.n_heads, self.d_head, self.d_model)
        return torch.einsum("hkn,bnd,hed->bhke", proj, x, w)

    def attend(self, x: torch.Tensor, mask: torch.Tensor | None, return_weights: bool, last_only: bool):
        if x.shape[1] > self.seq_len:
            raise ValueError(f"sequence length {x.shape[1]} exceeds Linformer seq_len {self.seq_len}")
        q = self.split(onednn.linear(x[:, -1:] if last_only else x, self.to_q.weight))
        xm = x if mask is None else x * mask[..., None].to(x.dtype)
        keys = self._project(xm, self.proj_k, self.to_k)
        values = self._project(xm, self.proj_k if self.proj_v is None else self.proj_v, self.to_v)
        if return_weights:
            weights = (q @ keys.transpose(-1, -2) * self.d_head**-0.5).softmax(-1)
            return self.merge(weights @ values), weights
        return self.merge(F.scaled_dot_product_attention(q, keys, values))
