"""Reformer LSH self-attention (Kitaev et al. 2020) with shared query/key projections.

Each hash round draws random rotations R and puts token x in bucket
``argmax([xR ; -xR])`` (angular LSH). Tokens are sorted by (bucket, position), cut into
chunks of ``bucket_size`` and every chunk attends to itself and the previous chunk (the
first wraps to the last). Keys are the unit-normalised queries; a token never attends to
itself unless nothing else is allowed (score -1e5 instead of -1e9), and ``causal`` masks
later positions. Rounds are combined with weights ``softmax_r(logsumexp_r)``: each
round's output weighted by its share of the total softmax mass, which is attention over
the union of the rounds' windows (a key found by several rounds counts once per round).

The rotations are a buffer drawn once from a seeded generator, so inference is
deterministic and identical for any batch composition. The bucket count follows the
input length (``ceil(L / bucket_size)`` rounded up to even, using the first columns of
the rotations) up to ``MAX_BUCKETS``, unless ``n_buckets`` fixes it; ``n_buckets=1``
disables hashing. Hashing costs ``n_buckets / 2`` dot products per token and round, so
buckets following the length without a cap made it quadratic: at 65,536 tokens it was
more than half of a layer's time. The cap is the count at 4,096 tokens, so shorter
windows hash as before; a checkpoint made before the cap with a longer window keeps the
first columns of its rotations (:meth:`LSHAttention._load_from_state_dict`). Masked
and padding tokens get a bucket of their own after all others, so their content never
changes which real tokens share a chunk.

The rounds run as one batch of sorted rows; without grad, rounds whose rows would pass
``ROWS_BUDGET`` run in groups instead, so a large evaluation batch does not hold every
round's copy of the rows at once. Either way gives the same bits.

On CPU the chunks go through the fused kernel behind SDPA
(``aten._scaled_dot_product_flash_attention_for_cpu``), which also returns the
log-sum-exp the rounds need (elsewhere plain tensor ops compute the same); a small
autograd function supplies the gradient of both outputs, recomputing the chunk
probabilities in the backward pass instead of storing them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.attention.base import NEG, AttentionBase

SELF = -1e5  # score of attending to oneself: used only when no other key is allowed
ROWS_BUDGET = 64 * 2**20  # bytes of sorted rows that rounds run as one batch may hold, without grad
HASH_VALUES = 2**22  # projections hashed at a time (16 MB of float32)
PROBS_BUDGET = 32 * 2**20  # bytes of chunk probabilities the backward pass recomputes at a time
MAX_BUCKETS = 64  # most buckets a round uses when ``n_buckets`` is not given


def _even_buckets(length: int, bucket_size: int) -> int:
    """Buckets for ``length`` tokens when not fixed: one per chunk, even, at most ``MAX_BUCKETS``."""
    n = max(2, math.ceil(length / bucket_size))
    return min(n + n % 2, MAX_BUCKETS)


def _forward(q, k, v, bias, scale: float):
    """Output and log-sum-exp of softmax attention with an additive bias (no autograd)."""
    fused = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if fused is not None and q.device.type == "cpu" and q.dtype == torch.float32:
        return fused(q, k, v, attn_mask=bias, scale=scale)
    dots = q @ k.transpose(-1, -2) * scale + bias
    lse = dots.logsumexp(dim=-1)
    return (dots - lse[..., None]).exp() @ v, lse


def _windows(rows: torch.Tensor, c: int, look: int) -> torch.Tensor:
    """``[B, look + L, e]`` (last chunk prepended when ``look == c``) -> overlapping view
    ``[B, chunks, look + c, e]``: every chunk after the one before it, without a copy."""
    bh, total, e = rows.shape
    return rows.as_strided((bh, (total - look) // c, c + look, e),
                           (rows.stride(0), c * rows.stride(1), rows.stride(1), rows.stride(2)),
                           rows.storage_offset())


def _table_rows(table: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` ``[B, L, e]`` at ``positions`` ``[R * B, n]``, where row ``i`` of the
    positions reads sample ``i % B``: ``[R * B, n, e]``. Whole rows are copied by
    ``index_select`` (a ``gather`` reads an index per value: three times as long at 16k)."""
    bh, length, e = table.shape
    base = torch.arange(bh, device=positions.device).repeat(positions.shape[0] // bh)[:, None] * length
    rows = table.reshape(-1, e).index_select(0, (positions + base).view(-1))
    return rows.view(*positions.shape, e)


def _split_rows(rows: torch.Tensor, c: int, look: int, dh: int):
    """Queries ``[B, chunks, c, dh]`` and key/value windows from ``[q | unit k | v]`` rows."""
    win = _windows(rows, c, look)
    return rows[:, look:, :dh].unflatten(1, (-1, c)), win[..., dh : 2 * dh], win[..., 2 * dh :]


class _RoundAttention(torch.autograd.Function):
    """Chunk-window attention of one hash round on sorted ``[q | unit k | v]`` rows,
    returning ``(output, logsumexp)``, both differentiable with respect to the rows.

    The forward stores no score matrix (fused kernel on CPU); the backward recomputes it,
    a group of rows at a time (:func:`_round_backward`)."""

    @staticmethod
    def forward(ctx, rows, bias, c, look, dh):
        q, k, v = _split_rows(rows, c, look, dh)
        out, lse = _forward(q, k, v, bias, dh**-0.5)
        ctx.save_for_backward(rows, bias, out, lse)
        ctx.shape = c, look, dh
        return out, lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, d_out, d_lse):
        rows, bias, out, lse = ctx.saved_tensors
        c, look, dh = ctx.shape
        d_out = torch.zeros_like(out) if d_out is None else d_out
        d_rows = torch.zeros_like(rows)
        per_row = out.shape[1] * c * (c + look) * out.element_size()  # one row's probabilities
        step = max(1, PROBS_BUDGET // per_row)
        for i in range(0, rows.shape[0], step):
            part = slice(i, i + step)
            row_bias = bias if bias.dim() < 4 else bias[part]
            _round_backward(rows[part], row_bias, out[part], lse[part], d_out[part],
                            None if d_lse is None else d_lse[part], d_rows[part], c, look, dh)
        return d_rows, None, None, None, None


def _round_backward(rows, bias, out, lse, d_out, d_lse, d_rows, c: int, look: int, dh: int) -> None:
    """The gradient of :class:`_RoundAttention` for some of its rows, added into ``d_rows``:
    the probabilities P are recomputed, ``dS = P * (dO V^T - rowsum(dO * O) + dlse)``, and
    the window gradients are added back onto the rows each window was cut from. Rows run
    in groups of ``PROBS_BUDGET`` bytes of probabilities (at 16k, batch 2, all at once they
    were 1 GB, twice over)."""
    q, k, v = _split_rows(rows, c, look, dh)
    scale = dh**-0.5
    probs = (q * scale) @ k.transpose(-1, -2)
    probs.add_(bias).sub_(lse[..., None]).exp_()
    shift = (d_out * out).sum(-1, keepdim=True)
    if d_lse is not None:
        shift = shift - d_lse[..., None]
    d_scores = (d_out @ v.transpose(-1, -2)).sub_(shift).mul_(probs)
    d_rows[:, look:, :dh] = (d_scores @ k).mul_(scale).flatten(1, 2)
    d_k = (d_scores.transpose(-1, -2) @ q).mul_(scale)
    d_v = probs.transpose(-1, -2) @ d_out
    for grad, part in ((d_k, slice(dh, 2 * dh)), (d_v, slice(2 * dh, None))):
        d_rows[:, look:, part].unflatten(1, (-1, c)).add_(grad[:, :, look:])
        if look:
            d_rows[:, : rows.shape[1] - c, part].unflatten(1, (-1, c)).add_(grad[:, :, :look])


class LSHAttention(AttentionBase):
    """Multi-round LSH attention over sorted chunks; O(L * bucket_size) per round."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        seq_len: int,
        n_hashes: int = 4,
        bucket_size: int = 64,
        causal: bool = False,
        n_buckets: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(d_model, n_heads)
        self.n_hashes = n_hashes
        self.bucket_size = bucket_size
        self.causal = causal
        self.n_buckets = n_buckets
        max_buckets = n_buckets or _even_buckets(seq_len, bucket_size)
        self.to_qk = nn.Linear(d_model, d_model, bias=False)
        self.to_v = nn.Linear(d_model, d_model, bias=False)
        gen = torch.Generator().manual_seed(seed)
        rotations = torch.randn(n_heads, n_hashes, self.d_head, max(1, max_buckets // 2),
                                generator=gen)
        self.register_buffer("rotations", rotations)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Keep the columns of a checkpoint's rotations this layer uses: one saved before
        ``MAX_BUCKETS`` capped the bucket count holds more."""
        saved = state_dict.get(prefix + "rotations")
        if saved is not None and saved.shape[-1] > self.rotations.shape[-1] and self.n_buckets is None:
            state_dict[prefix + "rotations"] = saved[..., : self.rotations.shape[-1]]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def _buckets(self, qk: torch.Tensor, n_buckets: int) -> torch.Tensor:
        """Bucket id of every token in every round, ``argmax([xR ; -xR])``: ``[b, h, R, L]``,
        computed ``HASH_VALUES``-sized blocks of positions at a time (:meth:`_block_buckets`):
        the projections of every position at once were 128 MB at 16k, written and read six
        times (a block is 16 MB: smaller blocks were no faster, and each block costs the
        memory count of :mod:`models.budget` a few dozen fake-tensor ops)."""
        b, h, length, _ = qk.shape
        if n_buckets == 1:
            return torch.zeros(b, h, self.n_hashes, length, dtype=torch.long, device=qk.device)
        half = n_buckets // 2
        rot = self.rotations[..., :half].to(qk.dtype).transpose(-1, -2).flatten(1, 2)
        step = max(1, HASH_VALUES // (b * h * self.n_hashes * half))
        if step >= length:
            return self._block_buckets(rot, qk, half)
        out = torch.empty(b, h, self.n_hashes, length, dtype=torch.long, device=qk.device)
        for start in range(0, length, step):
            out[..., start : start + step] = self._block_buckets(rot, qk[:, :, start : start + step], half)
        return out

    def _block_buckets(self, rot: torch.Tensor, qk: torch.Tensor, half: int) -> torch.Tensor:
        """Bucket ids ``[b, h, R, n]`` of the ``n`` positions of ``qk`` under rotations ``rot``
        ``[h, R * half, d_head]``.

        The projections are laid out ``[b, h, R, half, L]`` so that every reduction runs over
        a non-innermost axis and vectorises along the positions; the first index reaching the
        maximum is found with ``amax`` over ranks (PyTorch's ``max(dim)`` with indices over a
        short innermost axis was half the cost of a whole layer), and the positions equal to
        the maximum by arithmetic (``sign(|x - best|) - 1``), not a comparison: on CPU a
        comparison that makes booleans took twice as long. Ties go to the first index, and
        to ``+xR`` over ``-xR``, as ``max`` would."""
        b, h, length, _ = qk.shape
        proj = (rot @ qk.transpose(-1, -2)).view(b, h, self.n_hashes, half, length)
        top, bottom = proj.amax(dim=-2), proj.amin(dim=-2)
        use_top = top >= -bottom
        best = torch.where(use_top, top, bottom).unsqueeze(-2)
        neg_rank = torch.arange(-half, 0, dtype=proj.dtype, device=qk.device)[:, None]
        at_best = proj.sub_(best).abs_().sign_().sub_(1)  # -1 where proj equals best, else 0
        first = half - at_best.mul_(neg_rank).amax(dim=-2)
        return (first + torch.where(use_top, 0.0, float(half))).long()

    def _sorted(self, orders: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The rounds' sort orders ``[R, B, L]`` as ``[R * B, L]``; the same with the last
        chunk put in front, as the first chunk's look-back (none when there is one chunk);
        and the look-back's length."""
        rounds, bh, length = orders.shape
        order = orders.reshape(rounds * bh, length)
        look = self.bucket_size if length // self.bucket_size > 1 else 0
        return order, torch.cat([order[:, length - look:], order], dim=1), look

    def _rounds(self, table: torch.Tensor, keep: torch.Tensor | None, orders: torch.Tensor):
        """Every hash round at once over ``table = [q | unit k | v]`` rows of ``[B, L, 3 d]``,
        the rounds' sort orders ``[R, B, L]`` stacked as one batch of ``R * B``: attend within
        chunk windows; output ``[R, B, L, d]`` and lse ``[R, B, L]`` in token order, plus the
        positions and bias of the windows."""
        rounds, bh, length = orders.shape
        c, dh = self.bucket_size, self.d_head
        nc = length // c
        order, ext, look = self._sorted(orders)
        rows = _table_rows(table, ext)
        window = (rounds * bh, nc, c + look)
        qpos = order.view(rounds * bh, nc, c)
        kpos = _windows(ext[..., None], c, look)[..., 0]
        bias = torch.zeros(c, c + look, device=order.device, dtype=table.dtype)
        bias[:, look:].fill_diagonal_(SELF)
        if keep is not None:
            kkeep = keep.repeat(rounds, 1).gather(1, kpos.reshape(rounds * bh, -1)).view(window)
            bias = bias + torch.where(kkeep, 0.0, NEG).to(table.dtype)[:, :, None, :]
        if self.causal:
            bias = bias + torch.where(kpos[:, :, None, :] > qpos[..., None], NEG, 0.0).to(table.dtype)
        out, lse = _RoundAttention.apply(rows, bias, c, look, dh)
        flat = (order + torch.arange(rounds * bh, device=order.device)[:, None] * length).flatten()
        unsort = torch.empty_like(flat).scatter_(0, flat, torch.arange(flat.numel(), device=flat.device))
        out = out.reshape(-1, dh).index_select(0, unsort)
        lse = lse.flatten().gather(0, unsort)
        return out.view(rounds, bh, length, dh), lse.view(rounds, bh, length), (qpos, kpos, bias)

    def _last_rounds(self, table: torch.Tensor, keep: torch.Tensor | None, orders: torch.Tensor,
                     last: int):
        """Every hash round for the token at position ``last`` alone: it attends to the window
        of its chunk, exactly as in :meth:`_rounds`; output ``[R, B, 1, d]`` and lse
        ``[R, B, 1]``."""
        rounds, bh, _ = orders.shape
        c, dh = self.bucket_size, self.d_head
        order, ext, look = self._sorted(orders)
        slot = (order == last).to(torch.uint8).argmax(dim=1, keepdim=True)
        offsets = torch.arange(c + look, device=order.device)
        kpos = ext.gather(1, (slot - slot % c) + offsets)
        rows = _table_rows(table, kpos)
        bias = torch.where(offsets == look + slot % c, SELF, 0.0).to(table.dtype)
        if keep is not None:
            bias = bias + torch.where(keep.repeat(rounds, 1).gather(1, kpos), 0.0, NEG).to(table.dtype)
        if self.causal:
            bias = bias + torch.where(kpos > last, NEG, 0.0).to(table.dtype)
        query = table[:, None, last : last + 1, :dh].repeat(rounds, 1, 1, 1)
        out, lse = _forward(query, rows[:, None, :, dh : 2 * dh], rows[:, None, :, 2 * dh :],
                            bias[:, None, None, :], dh**-0.5)
        return out.view(rounds, bh, 1, dh), lse.view(rounds, bh, 1)

    def attend(self, x: torch.Tensor, mask: torch.Tensor | None, return_weights: bool, last_only: bool):
        b, length, _ = x.shape
        h, dh = self.n_heads, self.d_head
        pad = (-length) % self.bucket_size
        qk, v = self.split(self.to_qk(x)), self.split(self.to_v(x))
        keep = mask
        if pad:
            qk, v = F.pad(qk, (0, 0, 0, pad)), F.pad(v, (0, 0, 0, pad))
            real = torch.ones(b, length, dtype=torch.bool, device=x.device) if mask is None else mask
            keep = F.pad(real, (0, pad), value=False)
        if keep is not None:
            keep = keep[:, None, :].expand(-1, h, -1).reshape(b * h, -1)
        padded = length + pad
        n_buckets = self.n_buckets or _even_buckets(padded, self.bucket_size)
        table = torch.cat([qk, F.normalize(qk, dim=-1), v], dim=-1).view(b * h, padded, 3 * dh)
        buckets = self._buckets(qk, n_buckets)
        if keep is not None:  # padding sorts last, so it never displaces real tokens
            buckets = buckets.masked_fill(~keep.view(b, h, 1, padded), n_buckets)
        # a stable sort of the bucket ids is the sort by (bucket, position), at a third of the cost
        orders = buckets.sort(dim=-1, stable=True)[1].permute(2, 0, 1, 3).reshape(-1, b * h, padded)
        if last_only:
            outs, lse = self._last_rounds(table, keep, orders, length - 1)
        elif torch.is_grad_enabled() or return_weights:
            outs, lse, round_windows = self._rounds(table, keep, orders)
        else:
            group = max(1, ROWS_BUDGET // (table.numel() * table.element_size()))
            parts = [self._rounds(table, keep, orders[i : i + group])[:2]
                     for i in range(0, self.n_hashes, group)]
            outs, lse = (torch.cat(part) for part in zip(*parts, strict=True))
        share = (lse - lse.logsumexp(dim=0)).exp()[..., None]
        out = outs[0] * share[0]
        for r in range(1, self.n_hashes):
            out = out.addcmul_(outs[r], share[r])
        rows = 1 if last_only else length
        out = self.merge(out.view(b, h, -1, dh)[:, :, :rows])
        if not return_weights:
            return out
        weights = self._dense_weights(table, lse.logsumexp(0), round_windows)
        return out, weights.view(b, h, padded, padded)[:, :, :length, :length]

    def _dense_weights(self, table, lse_total, round_windows):
        """The attention matrix the combined rounds stand for, ``[b*h, L, L]`` (inspection),
        from the rounds' windows as :meth:`_rounds` returns them."""
        qpos, kpos, bias = round_windows
        bh, length, _ = table.shape
        rounds, dh = qpos.shape[0] // bh, self.d_head
        table, lse_total = table.repeat(rounds, 1, 1), lse_total.repeat(rounds, 1)
        q = table[..., :dh].gather(1, qpos.reshape(rounds * bh, -1, 1).expand(-1, -1, dh))
        k = table[..., dh : 2 * dh].gather(1, kpos.reshape(rounds * bh, -1, 1).expand(-1, -1, dh))
        dots = q.view(*qpos.shape, dh) @ k.view(*kpos.shape, dh).transpose(-1, -2)
        dots = dots * dh**-0.5 + bias
        lse_q = lse_total.gather(1, qpos.reshape(rounds * bh, -1)).view(qpos.shape)
        flat = (qpos[..., :, None] * length + kpos[..., None, :]).reshape(rounds * bh, -1)
        dense = table.new_zeros(rounds * bh, length * length)
        dense.scatter_add_(1, flat, (dots - lse_q[..., None]).exp().reshape(rounds * bh, -1))
        return dense.view(rounds, bh, length, length).sum(0)
