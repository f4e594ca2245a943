"""Attention modules: common signature, exactness limits, approximation quality, batch
invariance."""

import inspect

import pytest
import torch
import torch.nn.functional as F

from models import build_attention
from models.attention import ATTENTIONS
from models.attention_options import OPTIONS, check_options

D, H = 32, 4
KINDS = {
    "full": {},
    "linformer": {"k": 16},
    "reformer": {"bucket_size": 8, "n_hashes": 2},
    "nystrom": {"num_landmarks": 8},
}


def _inputs(kind: str, n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if kind == "random":
        return torch.randn(2, n, D, generator=gen)
    centres = torch.randn(4, D, generator=gen) * 2
    labels = torch.randint(0, 4, (2, n), generator=gen)
    return centres[labels] + 0.3 * torch.randn(2, n, D, generator=gen)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def _lsh_reference(lsh, x, causal=False):
    """Full softmax attention with LSH's shared QK, unit keys and self-masking."""
    qk, v = lsh.split(lsh.to_qk(x)), lsh.split(lsh.to_v(x))
    scores = qk @ F.normalize(qk, dim=-1).transpose(-1, -2) * lsh.d_head**-0.5
    n = x.shape[1]
    scores = scores.masked_fill(torch.eye(n, dtype=torch.bool), -1e5)
    if causal:
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), -1e9)
    return lsh.merge(scores.softmax(-1) @ v)


@pytest.mark.parametrize("kind", KINDS)
def test_signature_mask_and_weights(kind):
    torch.manual_seed(0)
    attn = build_attention(kind, D, H, 64, **KINDS[kind])
    x = torch.randn(2, 50, D)
    mask = torch.ones(2, 50, dtype=torch.bool)
    mask[1, :7] = False
    for m in (None, mask):
        with torch.no_grad():
            fast = attn(x, mask=m)
        slow, weights = attn(x, mask=m, return_weights=True)
        assert fast.shape == x.shape and torch.isfinite(fast).all()
        assert weights.shape[:3] == (2, H, 50)
        torch.testing.assert_close(fast[0], slow[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fast[1, 7:], slow[1, 7:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_does_not_leak(kind):
    torch.manual_seed(1)
    attn = build_attention(kind, D, H, 64, **KINDS[kind]).eval()
    x = torch.randn(1, 40, D)
    mask = torch.ones(1, 40, dtype=torch.bool)
    mask[0, :5] = False
    noisy = x.clone()
    noisy[0, :5] = 100 * torch.randn(5, D)
    with torch.no_grad():
        a, b = attn(x, mask=mask), attn(noisy, mask=mask)
    torch.testing.assert_close(a[0, 5:], b[0, 5:], atol=1e-5, rtol=1e-5)


LAST_ONLY_CASES = {
    **{kind: (kind, options) for kind, options in KINDS.items()},
    "causal reformer": ("reformer", {"bucket_size": 8, "n_hashes": 3, "causal": True}),
    "nystrom without conv": ("nystrom", {"num_landmarks": 8, "residual_conv": False}),
}


@pytest.mark.parametrize("case", LAST_ONLY_CASES)
@pytest.mark.parametrize("length", [1, 3, 9, 16, 17, 50, 64])
def test_last_only_equals_the_last_row_of_every_position(case, length):
    """The last position alone, as the encoder's last layer asks for it, is the last row of
    the whole pass: every length class (one chunk or several, ragged landmark segments,
    shorter than the convolution) and front padding in the second sample."""
    torch.manual_seed(3)
    kind, options = LAST_ONLY_CASES[case]
    attn = build_attention(kind, D, H, 64, **options).eval()
    x = torch.randn(2, length, D)
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, : length // 3] = False
    for m in (None, mask):
        with torch.no_grad():
            every, last = attn(x, mask=m), attn(x, mask=m, last_only=True)
        assert last.shape == (2, 1, D)
        torch.testing.assert_close(last, every[:, -1:], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_last_only_has_no_weights_to_return(kind):
    attn = build_attention(kind, D, H, 64, **KINDS[kind])
    with pytest.raises(ValueError, match="last_only"):
        attn(torch.randn(1, 16, D), return_weights=True, last_only=True)


@pytest.mark.parametrize("kind", KINDS)
def test_batch_composition_does_not_change_results(kind):
    torch.manual_seed(2)
    attn = build_attention(kind, D, H, 64, **KINDS[kind]).eval()
    x = torch.randn(5, 48, D)
    with torch.no_grad():
        together = attn(x)
        alone = torch.cat([attn(x[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=1e-5)


def test_nystrom_with_a_landmark_per_token_is_exact():
    torch.manual_seed(3)
    with torch.autocast("cpu", enabled=False):
        x = torch.randn(2, 16, D, dtype=torch.float64)
        full = build_attention("full", D, H, 16).double()
        nys = build_attention("nystrom", D, H, 16, num_landmarks=16, pinv_iterations=60,
                              residual_conv=False).double()
        nys.load_state_dict(full.state_dict())
        assert _rel(nys(x), full(x)) < 1e-8


def test_linformer_with_identity_projections_is_exact():
    torch.manual_seed(4)
    n = 24
    lin = build_attention("linformer", D, H, n, k=n)
    with torch.no_grad():
        lin.proj_k.copy_(torch.eye(n))
        lin.proj_v.copy_(torch.eye(n))
    full = build_attention("full", D, H, n)
    full.to_qkv.weight.data = torch.cat([lin.to_q.weight, lin.to_k.weight, lin.to_v.weight])
    full.to_out.load_state_dict(lin.to_out.state_dict())
    x = torch.randn(3, n, D)
    torch.testing.assert_close(lin(x), full(x), atol=1e-5, rtol=1e-5)


def test_linformer_shorter_input_equals_zero_padding():
    torch.manual_seed(5)
    lin = build_attention("linformer", D, H, 32, k=8, share_kv=True, share_heads=False).eval()
    x = torch.randn(2, 20, D)
    with torch.no_grad():
        short = lin(x)
        padded = lin(F.pad(x, (0, 0, 0, 12)))[:, :20]
    torch.testing.assert_close(short, padded, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError):
        lin(torch.randn(1, 33, D))


@pytest.mark.parametrize("causal", [False, True])
def test_lsh_with_one_bucket_and_one_chunk_is_exact(causal):
    torch.manual_seed(6)
    lsh = build_attention("reformer", D, H, 30, n_hashes=1, bucket_size=32, n_buckets=1,
                          causal=causal)
    x = torch.randn(2, 30, D)
    torch.testing.assert_close(lsh(x), _lsh_reference(lsh, x, causal), atol=1e-5, rtol=1e-5)


def test_nystrom_with_ragged_length_is_valid():
    torch.manual_seed(7)
    nys = build_attention("nystrom", D, H, 64, num_landmarks=16)
    out, weights = nys(torch.randn(2, 50, D), return_weights=True)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, H, 50), atol=1e-2, rtol=0)


@pytest.mark.parametrize("length", [64, 50, 7])
@pytest.mark.parametrize("last_only", [False, True])
@pytest.mark.parametrize("conv", [True, False])
def test_nystrom_without_a_mask_equals_the_padded_masked_computation(length, last_only, conv):
    """Without a mask the padding stays implicit (landmarks from means of the inputs, no
    padded keys): the same outputs as the masked path given a mask of real tokens only."""
    torch.manual_seed(7)
    nys = build_attention("nystrom", D, H, 64, num_landmarks=16, residual_conv=conv, conv_kernel=5)
    x = torch.randn(2, length, D)
    with torch.no_grad():
        want = nys(x, mask=torch.ones(2, length, dtype=torch.bool), last_only=last_only)
        torch.testing.assert_close(nys(x, last_only=last_only), want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("inputs", ["random", "structured"])
def test_nystrom_error_falls_with_landmarks(inputs):
    torch.manual_seed(8)
    n = 128
    x = _inputs(inputs, n).double()
    full = build_attention("full", D, H, n).double()
    ref = full(x)
    errors = []
    for m in (16, 32, 64, 128):
        nys = build_attention("nystrom", D, H, n, num_landmarks=m, pinv_iterations=40,
                              residual_conv=False).double()
        nys.load_state_dict(full.state_dict())
        errors.append(_rel(nys(x), ref))
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < 1e-4 < errors[0]


@pytest.mark.parametrize("inputs", ["random", "structured"])
def test_lsh_error_falls_with_hash_rounds(inputs):
    torch.manual_seed(9)
    n = 128
    x = _inputs(inputs, n)
    base = build_attention("reformer", D, H, n, n_hashes=1, bucket_size=16)
    weights = {k: v for k, v in base.state_dict().items() if k != "rotations"}
    ref = _lsh_reference(base, x)
    errors = []
    for rounds in (1, 2, 4, 8):
        runs = []
        for seed in range(3):
            lsh = build_attention("reformer", D, H, n, n_hashes=rounds, bucket_size=16, seed=seed)
            lsh.load_state_dict(weights, strict=False)
            with torch.no_grad():
                runs.append(_rel(lsh(x), ref))
        errors.append(sum(runs) / len(runs))
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < 0.8 * errors[0]


def test_lsh_rotations_are_seeded_buffers():
    a = build_attention("reformer", D, H, 64, seed=3)
    b = build_attention("reformer", D, H, 64, seed=3)
    assert "rotations" in a.state_dict()
    torch.testing.assert_close(a.rotations, b.rotations)


def test_lsh_bucket_count_is_capped_past_4096_tokens():
    """Buckets follow the length up to MAX_BUCKETS (the count at 4,096 tokens of 64), so the
    hash stays linear in the length; shorter windows keep one bucket per chunk."""
    from models.attention.reformer import MAX_BUCKETS

    short = build_attention("reformer", D, H, 2048, bucket_size=64)
    long = build_attention("reformer", D, H, 16384, bucket_size=64)
    assert short.rotations.shape[-1] == 16 and long.rotations.shape[-1] == MAX_BUCKETS // 2 == 32
    gen = torch.Generator().manual_seed(2)
    qk = torch.randn(1, H, 16384, D // H, generator=gen)
    proj = torch.einsum("bhld,hrdk->bhrlk", qk, long.rotations)
    expected = torch.cat([proj, -proj], dim=-1).argmax(dim=-1)
    buckets = long._buckets(qk, MAX_BUCKETS)
    assert torch.equal(buckets, expected) and int(buckets.max()) < MAX_BUCKETS


def test_lsh_checkpoint_from_before_the_cap_keeps_its_first_rotation_columns():
    """A layer saved with more rotation columns than the cap loads them cut to the cap."""
    layer = build_attention("reformer", D, H, 16384, bucket_size=64)
    saved = dict(layer.state_dict())
    older = torch.randn(*layer.rotations.shape[:-1], 128)
    saved["rotations"] = older
    layer.load_state_dict(saved)
    assert torch.equal(layer.rotations, older[..., :32])


@pytest.mark.parametrize("values", ["random", "ties"])
def test_lsh_buckets_are_the_argmax_of_plus_and_minus_rotations(values):
    """Angular LSH by definition: bucket = first argmax of [xR ; -xR], ties included."""
    lsh = build_attention("reformer", D, H, 64, n_hashes=3, bucket_size=8)
    gen = torch.Generator().manual_seed(5)
    qk = torch.randn(2, H, 64, D // H, generator=gen)
    if values == "ties":  # small integers: many rows with equal top and -bottom values
        lsh.rotations.copy_(torch.randint(-2, 3, lsh.rotations.shape, generator=gen).float())
        qk = torch.randint(-1, 2, qk.shape, generator=gen).float()
    half = 4
    proj = torch.einsum("bhld,hrdk->bhrlk", qk, lsh.rotations[..., :half])
    expected = torch.cat([proj, -proj], dim=-1).argmax(dim=-1)
    assert torch.equal(lsh._buckets(qk, 2 * half), expected)


def test_lsh_rounds_in_groups_give_the_same_bits(monkeypatch):
    """Without grad, rounds whose sorted rows pass the budget run a group at a time."""
    import models.attention.reformer as reformer

    torch.manual_seed(6)
    lsh = build_attention("reformer", D, H, 64, n_hashes=4, bucket_size=8).eval()
    x = torch.randn(3, 40, D)
    with torch.no_grad():
        together = lsh(x)
        monkeypatch.setattr(reformer, "ROWS_BUDGET", 1)
        one_at_a_time = lsh(x)
    assert torch.equal(together, one_at_a_time)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown attention"):
        build_attention("performer", D, H, 64)


def test_every_kind_checks_exactly_its_constructor_options():
    assert list(OPTIONS) == list(ATTENTIONS)
    for kind, cls in ATTENTIONS.items():
        params = list(inspect.signature(cls.__init__).parameters)
        assert params[:4] == ["self", "d_model", "n_heads", "seq_len"]
        assert params[4:] == list(OPTIONS[kind]), kind


@pytest.mark.parametrize("kind, options, message", [
    ("full", {"k": 16}, "full takes no option 'k'; it takes none"),
    ("linformer", {"kk": 3}, "linformer takes no option 'kk'; its options: k, share_kv, share_heads"),
    ("linformer", {"k": 0}, "linformer option k must be a whole number >= 1, got 0"),
    ("linformer", {"k": -3}, "linformer option k must be a whole number >= 1, got -3"),
    ("linformer", {"share_kv": "yes"}, "share_kv must be true or false, got 'yes'"),
    ("reformer", {"bucket_size": "abc"}, "bucket_size must be a whole number >= 1, got 'abc'"),
    ("reformer", {"n_hashes": 0}, "n_hashes must be a whole number >= 1, got 0"),
    ("reformer", {"n_hashes": True}, "n_hashes must be a whole number >= 1, got True"),
    ("reformer", {"n_buckets": 3}, "n_buckets must be 1 or an even whole number"),
    ("nystrom", {"num_landmarks": 0}, "num_landmarks must be a whole number >= 1, got 0"),
    ("nystrom", {"num_landmarks": -3}, "num_landmarks must be a whole number >= 1, got -3"),
    ("nystrom", {"pinv_iterations": 0}, "pinv_iterations must be a whole number >= 1, got 0"),
    ("nystrom", {"conv_kernel": 4}, "conv_kernel must be an odd whole number"),
])
def test_bad_options_are_one_line(kind, options, message):
    with pytest.raises(ValueError) as info:
        build_attention(kind, D, H, 64, **options)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_linformer_k_above_the_window_is_refused_for_training_only():
    with pytest.raises(ValueError, match="linformer k 65 exceeds the 64 tokens"):
        check_options("linformer", {"k": 65}, tokens=64)
    check_options("linformer", {"k": 64}, tokens=64)
    assert build_attention("linformer", D, H, 64, k=65).k == 65  # older checkpoints still load


@pytest.mark.parametrize("options", [{"bucket_size": 4, "n_hashes": 2},
                                     {"bucket_size": 4, "n_hashes": 3, "causal": True}])
def test_lsh_gradients_are_exact(options):
    """The LSH round's hand-written backward (which recomputes probabilities) agrees with
    finite differences, through sorting, windows, padding and the round combination."""
    torch.manual_seed(10)
    lsh = build_attention("reformer", 8, 2, 12, **options).double()
    x = torch.randn(2, 10, 8, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, :3] = False

    def real_outputs(x):
        out = lsh(x, mask=mask)
        return torch.cat([out[0], out[1, 3:]])

    assert torch.autograd.gradcheck(real_outputs, (x,))
