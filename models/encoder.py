"""The forecasting encoder: input projection, positional (and optional timeframe)
embeddings, pre-norm encoder layers with pluggable attention, and one output head.

Input is ``[batch, tokens, features]``; with several timeframes the tokens are
``n_timeframes`` segments of ``seq_len`` bars each, coarsest first, and the last token is
the newest bar of the base timeframe. The model reads that last token, so the last layer
computes that position alone; its keys and values still come from every token. No causal
mask is needed: a window holds only bars up to the prediction time.

Heads: ``regression`` gives forward log returns at 1..horizon bars (a buffer holds the
training targets' scale so outputs are in log-return units), ``classification`` gives
down/flat/up logits, ``allocation`` a position ``tanh(.)`` in [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import models.onednn as onednn
from models.attention import build_attention
from models.reversible import ReversibleBlock, ReversibleSequence

HEADS = ("regression", "classification", "allocation")


@dataclass
class EncoderConfig:
    """Everything needed to rebuild an encoder; stored as JSON in checkpoints."""

    n_features: int
    seq_len: int = 64
    attention: str = "full"
    attention_options: dict = field(default_factory=dict)
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    ff_mult: int = 4
    ff_chunks: int = 1
    dropout: float = 0.0
    reversible: bool = False
    positional: str = "sinusoidal"
    n_timeframes: int = 1
    head: str = "regression"
    horizon: int = 1

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")
        if self.positional not in ("sinusoidal", "learned"):
            raise ValueError("positional encoding must be 'sinusoidal' or 'learned'")

    @property
    def tokens(self) -> int:
        return self.seq_len * self.n_timeframes

    @property
    def out_dim(self) -> int:
        return {"regression": self.horizon, "classification": 3, "allocation": 1}[self.head]

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoidal(length: int, dim: int) -> torch.Tensor:
    """Fixed sine/cosine position table ``[length, dim]``."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return table


class FeedForward(nn.Module):
    """Position-wise MLP, optionally run over ``chunks`` slices of the sequence to cap memory
    when its hidden activation would pass ``UNCHUNKED_HIDDEN`` values. Smaller inputs, such
    as a window at a time, gain nothing from chunks and lose time: 5% of a Reformer forward
    at 4096, for the same bits. Without gradients, inputs longer than ``ROW_BLOCK`` rows run
    ``ROW_BLOCK`` rows at a time into one output, so the hidden activation stays in cache
    and is never a fresh page-faulting allocation: at 16,384 tokens and d_model 128 that
    halved the feed-forward's time (79 -> 38 ms). In inference mode it runs as oneDNN linears
    with the GELU fused into the first (:mod:`models.onednn`)."""

    UNCHUNKED_HIDDEN = 4 * 2**20
    ROW_BLOCK = 1024

    def __init__(self, dim: int, mult: int, dropout: float, chunks: int = 1) -> None:
        super().__init__()
        self.chunks = chunks
        self.net = nn.Sequential(nn.Linear(dim, dim * mult), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[1]
        if rows > self.ROW_BLOCK and not (torch.is_grad_enabled() and x.requires_grad):
            out = x.new_empty(*x.shape[:-1], self.net[-1].out_features)
            for start in range(0, rows, self.ROW_BLOCK):
                out[:, start : start + self.ROW_BLOCK] = self._mlp(x[:, start : start + self.ROW_BLOCK])
            return out
        hidden = x.numel() // x.shape[-1] * self.net[0].out_features
        if self.chunks == 1 or hidden <= self.UNCHUNKED_HIDDEN:
            return self._mlp(x)
        return torch.cat([self._mlp(part) for part in x.chunk(self.chunks, dim=1)], dim=1)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        """``net(x)``; in inference mode through :mod:`models.onednn`, the GELU fused into the
        first linear (a 1,024-row block: 49 -> 44 ms for 16 blocks on one thread)."""
        if not onednn.usable(x) or (self.training and self.net[2].p > 0):
            return self.net(x)
        up, down = self.net[0], self.net[-1]
        return onednn.linear(onednn.linear(x, up.weight, up.bias, gelu=True), down.weight, down.bias)


class PreNorm(nn.Module):
    """``fn(LayerNorm(x))`` followed by dropout: one residual branch."""

    def __init__(self, dim: int, fn: nn.Module, dropout: float) -> None:
        super().__init__()
        self.norm, self.fn, self.drop = nn.LayerNorm(dim), fn, nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.drop(self.fn(self.norm(x), **kwargs))


class EncoderLayer(nn.Module):
    """Pre-norm residual layer: ``x + attn(LN x)``, then ``x + ff(LN x)``."""

    def __init__(self, attn: nn.Module, ff: nn.Module, dim: int, dropout: float) -> None:
        super().__init__()
        self.attn, self.ff = PreNorm(dim, attn, dropout), PreNorm(dim, ff, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                last_only: bool = False) -> torch.Tensor:
        """``[b, L, d]``, or ``[b, 1, d]`` for the last position alone with ``last_only``."""
        if last_only:
            x = x[:, -1:] + self.attn(x, mask=mask, last_only=True)
        elif x.shape[1] > FeedForward.ROW_BLOCK and not torch.is_grad_enabled():
            return self._feed_forward_rows(self.attn(x, mask=mask).add_(x))
        else:
            x = x + self.attn(x, mask=mask)
        return x + self.ff(x)

    def _feed_forward_rows(self, x: torch.Tensor) -> torch.Tensor:
        """``x + ff(LN x)`` run ``ROW_BLOCK`` rows at a time, norm and residual included, so
        each block stays in cache between them: the same bits as the whole-length ops."""
        out = torch.empty_like(x)
        for start in range(0, x.shape[1], FeedForward.ROW_BLOCK):
            rows = x[:, start : start + FeedForward.ROW_BLOCK]
            torch.add(rows, self.ff(rows), out=out[:, start : start + FeedForward.ROW_BLOCK])
        return out


class SeriesEncoder(nn.Module):
    """Encoder over a window of feature vectors with a regression, classification or
    allocation head; see the module docstring for shapes."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = c = config
        self.inp = nn.Linear(c.n_features, c.d_model)
        positions = torch.arange(c.seq_len).repeat(c.n_timeframes)
        self.register_buffer("positions", positions, persistent=False)
        if c.positional == "learned":
            self.pos = nn.Embedding(c.seq_len, c.d_model)
        else:
            self.register_buffer("pos_table", sinusoidal(c.seq_len, c.d_model), persistent=False)
        if c.n_timeframes > 1:
            self.register_buffer("timeframe_ids",
                                 torch.arange(c.n_timeframes).repeat_interleave(c.seq_len),
                                 persistent=False)
            self.timeframe = nn.Embedding(c.n_timeframes, c.d_model)
        self.drop = nn.Dropout(c.dropout)

        def attn():
            return build_attention(c.attention, c.d_model, c.n_heads, c.tokens,
                                   **c.attention_options)

        def ff():
            return FeedForward(c.d_model, c.ff_mult, c.dropout, c.ff_chunks)

        if c.reversible:
            self.layers = ReversibleSequence([
                ReversibleBlock(PreNorm(c.d_model, attn(), c.dropout),
                                PreNorm(c.d_model, ff(), c.dropout))
                for _ in range(c.n_layers)])
        else:
            self.layers = nn.ModuleList(EncoderLayer(attn(), ff(), c.d_model, c.dropout)
                                        for _ in range(c.n_layers))
        self.norm = nn.LayerNorm(c.d_model)
        self.out = nn.Linear(c.d_model, c.out_dim)
        self.register_buffer("target_scale", torch.ones(c.out_dim))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Projected inputs plus position (and timeframe) embeddings: ``[b, tokens, d]``."""
        n = x.shape[1]
        positions = self.positions[-n:]
        if self.config.positional == "learned":
            pos = self.pos(positions)
        elif self.config.n_timeframes == 1:  # the same rows as indexing, without the copy
            pos = self.pos_table[self.config.seq_len - n :]
        else:
            pos = self.pos_table[positions]
        h = self.inp(x) + pos
        if self.config.n_timeframes > 1:
            h = h + self.timeframe(self.timeframe_ids[-n:])
        return self.drop(h)

    checkpointing = False  # training: recompute each layer in backward instead of storing it

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Head output for each window: ``[batch, out_dim]`` (see the module docstring).
        With ``checkpointing`` set, a training pass keeps only each layer's input and
        recomputes the layer in backward (``torch.utils.checkpoint``): activation memory of
        one layer instead of all, for about a third more time."""
        h = self.embed(x)
        if self.config.reversible:
            h = self.layers(h, mask=mask, last_only=True)
        else:
            recompute = self.checkpointing and torch.is_grad_enabled()
            for i, layer in enumerate(self.layers, 1):
                last = i == len(self.layers)
                if recompute:
                    h = checkpoint(layer, h, mask, last, use_reentrant=False)
                else:
                    h = layer(h, mask=mask, last_only=last)
        out = self.out(self.norm(h[:, -1]))
        if self.config.head == "allocation":
            return torch.tanh(out)
        if self.config.head == "regression":
            return out * self.target_scale
        return out
