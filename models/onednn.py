"""Linear layers through oneDNN in inference mode: for float32 inputs on CPU its GEMMs are
faster than the default ones on the encoder's long inputs (one thread, 16,384 x 128 rows:
the q/k/v projection 18.8 -> 16.1 ms, a 128-wide one 7.2 -> 5.9 ms), and it fuses the
feed-forward's GELU into its first linear. Values equal ``F.linear`` up to the GEMMs'
rounding. Training, and its no-grad passes that a reversible backward recomputes, keep
``F.linear``; so do inputs of fewer than ``MIN_ROWS`` rows (a short window, the last row
alone), where oneDNN gains nothing and its GEMMs' last bits would depend on the thread count
(a replay running windows side by side on one thread each would no longer equal live)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

AVAILABLE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
MIN_ROWS = 1024  # the feed-forward's row blocks at long windows are this long


def usable(x: torch.Tensor) -> bool:
    """Whether ``x`` takes the oneDNN path: in inference mode, float32, on CPU, with at least
    ``MIN_ROWS`` rows (its second-to-last axis)."""
    return (AVAILABLE and torch.is_inference_mode_enabled() and x.dtype == torch.float32
            and x.device.type == "cpu" and x.dim() >= 2 and x.shape[-2] >= MIN_ROWS)


def in_use(tokens: int) -> bool:
    """Whether a window of ``tokens`` rows runs its long linears through oneDNN in inference
    mode, so that its outputs' last bits may depend on the thread count."""
    return AVAILABLE and tokens >= MIN_ROWS


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           gelu: bool = False) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, followed by the exact (erf) GELU with ``gelu``."""
    if not usable(x):
        out = F.linear(x, weight, bias)
        return F.gelu(out) if gelu else out
    if gelu:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
    return gemm(x, weight, bias)


def gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` through oneDNN without a check: for a product whose window
    :func:`usable` accepted though ``x`` itself is short (Linformer's ``E`` times the input)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
