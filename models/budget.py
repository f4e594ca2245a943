"""What a model needs from this machine before it runs: peak tensor memory, counted by
running the model on fake tensors (shapes only, no arithmetic), and for full attention the
time of one forward pass, measured on a short window and scaled by the FLOPs of the long
one. ``train``, backtests and live sessions refuse a model that does not fit with one line
saying why and what would fit, instead of being killed for memory or never finishing.
"""

from __future__ import annotations

import dataclasses
import time
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from models.encoder import EncoderConfig, SeriesEncoder

PROBE_TOKENS = 2048  # full attention's forward is timed at this length and scaled
MEMORY_SHARE = 0.9  # of the memory available now that a run may plan to use
CHECKED_FROM = 4096  # tokens: shorter windows fit any machine this runs on, unchecked


class DoesNotFitError(ValueError):
    """A model that this machine cannot run in its memory or in the time it has."""


class _PeakBytes(TorchDispatchMode):
    """Counts the bytes of every tensor storage alive, and their peak, op by op."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._seen: weakref.WeakSet = weakref.WeakSet()

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                if storage not in self._seen:
                    self._seen.add(storage)
                    self.live += storage.nbytes()
                    weakref.finalize(storage, self._free, storage.nbytes())
        self.peak = max(self.peak, self.live)
        return out


def peak_bytes(config: EncoderConfig, batch: int = 1, training: bool = False,
               checkpointing: bool = False) -> int:
    """Peak bytes of tensors one forward pass (inference, the last position as live runs
    it) or one training step (forward, backward, AdamW state) of ``config`` holds, at
    ``batch`` windows; computed on fake tensors in a fraction of a second."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    model = SeriesEncoder(dataclasses.replace(config, dropout=0.0))
    model.checkpointing = checkpointing
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    with fake:
        x = torch.zeros(batch, config.tokens, config.n_features)
    counter = _PeakBytes()
    with fake, counter:
        if training:
            model.train()
            model(x).square().mean().backward()
        else:
            with torch.inference_mode():
                model.eval()(x)
    extra = 3 * params if training else 0  # gradients and AdamW's two moments
    return counter.peak + x.numel() * x.element_size() + extra


def _flops(config: EncoderConfig, tokens: int) -> float:
    """Multiply-adds x 2 of one last-position forward of full attention at ``tokens``."""
    d, ff, n = config.d_model, config.d_model * config.ff_mult, tokens
    every = n * 2 * d * (3 * d + d + 2 * ff) + 4 * n * n * d  # a layer over every position
    last = n * 2 * d * 2 * d + 2 * d * (2 * d + 2 * ff) + 4 * n * d
    return (config.n_layers - 1) * every + last + n * 2 * config.n_features * d


def forward_seconds(config: EncoderConfig, threads: int | None = None) -> float:
    """Seconds of one forward pass of full attention over the whole window on this
    machine: the fastest of three timed at ``PROBE_TOKENS`` tokens, scaled by the FLOPs."""
    probe_len = min(config.tokens, PROBE_TOKENS) // config.n_timeframes
    probe = dataclasses.replace(config, seq_len=max(1, probe_len), dropout=0.0)
    model = SeriesEncoder(probe).eval()
    x = torch.zeros(1, probe.tokens, config.n_features)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            model(x)
            best = float("inf")
            for _ in range(3):
                began = time.perf_counter()
                model(x)
                best = min(best, time.perf_counter() - began)
    finally:
        torch.set_num_threads(before)
    return best * _flops(config, config.tokens) / _flops(probe, probe.tokens)


def available_bytes() -> int:
    """Memory the kernel could give this process now (``MemAvailable``), or 0 if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MB"


def _longest(fits, tokens: int, step: int) -> int:
    """The most tokens (a multiple of ``step`` below ``tokens``) for which ``fits`` holds, 0 if none."""
    lo, hi = 0, tokens // step
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid * step):
            lo = mid
        else:
            hi = mid - 1
    return lo * step


def check_memory(config: EncoderConfig, batch: int, training: bool, what: str,
                 checkpointing: bool = False, available: int | None = None) -> int:
    """The expected peak bytes of ``batch`` windows of ``config``; refuses
    (:class:`DoesNotFitError`) a peak above ``MEMORY_SHARE`` of the memory ``available``
    (default: what this machine has available now), naming the batch that would fit."""
    have = available_bytes() if available is None else available
    built = config.tokens * 8 + 3 * config.seq_len * config.d_model * 4  # made for real, not faked
    if have and built > MEMORY_SHARE * have:
        raise DoesNotFitError(
            f"{what}: a window of {config.tokens:,} tokens needs about {gib(built)} for the model's "
            f"position tables alone and this machine has {gib(have)} available: shorten the window")
    need = peak_bytes(config, batch, training, checkpointing)
    if have and need > MEMORY_SHARE * have:
        one = peak_bytes(config, 1, training, checkpointing)
        fits = int(MEMORY_SHARE * have // one) if one else 0
        remedy = (f"a batch of {fits} fits" if fits >= 1 else
                  "not even one window fits: shorten the window or pick linformer, nystrom or reformer")
        raise DoesNotFitError(
            f"{what} needs about {gib(need)} of memory at its peak ({config.attention} attention, "
            f"{config.tokens:,} tokens, batch {batch}; counted on fake tensors) and this machine has "
            f"{gib(have)} available: {remedy}")
    return need


def check_forward_time(config: EncoderConfig, budget_s: float, why: str, threads: int | None = None) -> float:
    """Seconds a full-attention forward pass of ``config`` takes here (0 for other kinds,
    whose time grows with the window, not its square); refuses one longer than
    ``budget_s`` (``why`` names the budget) with the longest window that fits."""
    if config.attention != "full" or config.tokens < CHECKED_FROM:
        return 0.0
    seconds = forward_seconds(config, threads)
    if seconds <= budget_s:
        return seconds
    scale = seconds / _flops(config, config.tokens)
    step = config.n_timeframes
    longest = _longest(lambda n: scale * _flops(config, n) <= budget_s, config.tokens, step)
    fits = f"at most {longest:,} tokens fit" if longest else "no window fits"
    raise DoesNotFitError(
        f"full attention over {config.tokens:,} tokens needs about {seconds:.1f} s a forward pass on "
        f"this machine (timed at {min(config.tokens, PROBE_TOKENS):,} tokens, scaled by FLOPs), more "
        f"than {why} ({budget_s:g} s): {fits}; linformer, nystrom or reformer run longer windows")


def check_training(encoder: EncoderConfig, batch: int, eval_batch: int, checkpointing: bool,
                   interval: str, interval_s: float) -> int:
    """The peak memory a training run expects (a step at ``batch`` windows or an evaluation
    of ``eval_batch``, whichever is larger), refusing (:class:`DoesNotFitError`) one this
    machine cannot hold, or a full-attention model whose forward pass would not fit in one
    bar of ``interval``: backtests and live sessions would refuse it."""
    what = f"training {encoder.attention}"
    need = check_memory(encoder, batch, True, what, checkpointing)
    need = max(need, check_memory(encoder, eval_batch, False, f"evaluating {encoder.attention}"))
    check_forward_time(encoder, interval_s, f"one {interval} bar, in which a forecast must arrive")
    return need
