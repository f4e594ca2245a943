"""Reversible residual layers (Gomez et al. 2017, as used by Reformer).

A block maps ``(x1, x2)`` to ``y1 = x1 + f(x2)``, ``y2 = x2 + g(y1)``; its inverse is
``x2 = y2 - g(y1)``, ``x1 = y1 - f(x2)``. :class:`ReversibleSequence` runs all blocks
inside one autograd function that keeps only the final outputs: the backward pass
rebuilds each block's inputs from its outputs and recomputes ``f`` and ``g`` with the
random state they saw in the forward pass, so activation memory does not grow with depth.
"""

from __future__ import annotations

import torch
from torch import nn


class _Recorded(nn.Module):
    """Wraps a function so its recomputation in backward replays the same randomness."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self._cpu_state: torch.Tensor | None = None
        self._cuda_state: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, record: bool = False, replay: bool = False, **kwargs):
        if record:
            self._cpu_state = torch.get_rng_state()
            self._cuda_state = torch.cuda.get_rng_state(x.device) if x.is_cuda else None
        if not replay:
            return self.net(x, **kwargs)
        devices = [x.device] if x.is_cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self._cpu_state)
            if x.is_cuda:
                torch.cuda.set_rng_state(self._cuda_state, x.device)
            return self.net(x, **kwargs)


class ReversibleBlock(nn.Module):
    """``y1 = x1 + f(x2, **kw)``, ``y2 = x2 + g(y1)``, with an exact inverse."""

    def __init__(self, f: nn.Module, g: nn.Module) -> None:
        super().__init__()
        self.f, self.g = _Recorded(f), _Recorded(g)

    def forward(self, x1, x2, record: bool = False, last_only: bool = False, **kwargs):
        """``(y1, y2)``; with ``last_only``, at the last position alone (no inverse then)."""
        y1 = (x1[:, -1:] if last_only else x1) + self.f(x2, record=record, last_only=last_only, **kwargs)
        y2 = (x2[:, -1:] if last_only else x2) + self.g(y1, record=record)
        return y1, y2

    def inverse(self, y1, y2, **kwargs):
        """The inputs that produced ``(y1, y2)``."""
        x2 = y2 - self.g(y1)
        return y1 - self.f(x2, **kwargs), x2

    def backward_pass(self, y1, y2, dy1, dy2, **kwargs):
        """Rebuild the inputs and push gradients through the block; returns x1, x2, dx1, dx2."""
        with torch.enable_grad():
            y1 = y1.detach().requires_grad_()
            gy1 = self.g(y1, replay=True)
            gy1.backward(dy2)
        with torch.no_grad():
            x2 = y2 - gy1
            dx1 = dy1 + y1.grad
        with torch.enable_grad():
            x2 = x2.detach().requires_grad_()
            fx2 = self.f(x2, replay=True, **kwargs)
            fx2.backward(dx1)
        with torch.no_grad():
            x1 = y1 - fx2
            dx2 = dy2 + x2.grad
        return x1.detach(), x2.detach(), dx1, dx2


class _ReversibleFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, blocks, kwargs):
        x1, x2 = x.chunk(2, dim=-1)
        for block in blocks:
            x1, x2 = block(x1, x2, record=True, **kwargs)
        y = torch.cat([x1, x2], dim=-1)
        ctx.save_for_backward(y)
        ctx.blocks, ctx.kwargs = blocks, kwargs
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        y1, y2 = y.chunk(2, dim=-1)
        dy1, dy2 = dy.chunk(2, dim=-1)
        for block in reversed(ctx.blocks):
            y1, y2, dy1, dy2 = block.backward_pass(y1, y2, dy1, dy2, **ctx.kwargs)
        return torch.cat([dy1, dy2], dim=-1), None, None


class ReversibleSequence(nn.Module):
    """Reversible blocks on ``x`` duplicated into two streams; returns their mean."""

    def __init__(self, blocks: list[ReversibleBlock]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, last_only: bool = False, **kwargs) -> torch.Tensor:
        """The mean of the two streams, ``[b, L, d]``. Without gradients, ``last_only`` runs
        the last block for the last position alone (``[b, 1, d]``); training keeps every
        position, since the backward pass inverts the last block from all of its outputs."""
        x = torch.cat([x, x], dim=-1)
        if torch.is_grad_enabled() and x.requires_grad:
            y = _ReversibleFunction.apply(x, self.blocks, kwargs)
        else:
            x1, x2 = x.chunk(2, dim=-1)
            for i, block in enumerate(self.blocks, 1):
                x1, x2 = block(x1, x2, last_only=last_only and i == len(self.blocks), **kwargs)
            y = torch.cat([x1, x2], dim=-1)
        y1, y2 = y.chunk(2, dim=-1)
        return (y1 + y2) / 2
