"""Encoder, heads and reversible layers."""

import pytest
import torch

import models.onednn as onednn
from models.encoder import EncoderConfig, FeedForward, SeriesEncoder
from models.reversible import ReversibleBlock, ReversibleSequence


class _Noisy(torch.nn.Module):
    """A residual branch with dropout, to test that recomputation replays randomness."""

    def __init__(self, dim):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.Dropout(0.3))

    def forward(self, x, **kwargs):
        return self.net(x)


def _blocks(dim=8, n=3):
    torch.manual_seed(0)
    return ReversibleSequence([ReversibleBlock(_Noisy(dim), _Noisy(dim)) for _ in range(n)])


def test_reversible_block_inverse_reconstructs_inputs():
    block = _blocks().blocks[0].eval()
    x1, x2 = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    with torch.no_grad():
        y1, y2 = block(x1, x2)
        r1, r2 = block.inverse(y1, y2)
    torch.testing.assert_close(r1, x1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r2, x2, atol=1e-5, rtol=1e-5)


def test_reversible_gradients_match_plain_backprop():
    seq = _blocks()
    x = torch.randn(2, 5, 8, requires_grad=True)
    torch.manual_seed(1)
    seq(x).square().sum().backward()
    rev = [p.grad.clone() for p in seq.parameters()] + [x.grad.clone()]
    seq.zero_grad()
    x.grad = None
    torch.manual_seed(1)
    x1 = x2 = x
    for block in seq.blocks:
        x1, x2 = block(x1, x2)
    ((x1 + x2) / 2).square().sum().backward()
    plain = [p.grad for p in seq.parameters()] + [x.grad]
    for a, b in zip(rev, plain, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def _saved_bytes(model, x):
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    out.sum().backward()  # recomputation in backward is transient, one block at a time
    return total


def test_reversible_layers_store_less_for_backward():
    def build(reversible):
        torch.manual_seed(0)
        return SeriesEncoder(EncoderConfig(n_features=4, seq_len=64, attention="reformer",
                                           attention_options={"bucket_size": 16},
                                           d_model=32, n_layers=4, n_heads=2,
                                           reversible=reversible, ff_chunks=4))

    x = torch.randn(2, 64, 4)
    plain, rev = _saved_bytes(build(False), x), _saved_bytes(build(True), x)
    assert rev < 0.3 * plain, (rev, plain)


def test_chunked_feed_forward_equals_unchunked(monkeypatch):
    monkeypatch.setattr(FeedForward, "UNCHUNKED_HIDDEN", 0)
    torch.manual_seed(0)
    ff = FeedForward(8, 4, 0.0)
    chunked = FeedForward(8, 4, 0.0, chunks=3)
    chunked.load_state_dict(ff.state_dict())
    x = torch.randn(2, 10, 8)
    torch.testing.assert_close(chunked(x), ff(x))


def test_feed_forward_chunks_only_inputs_with_a_large_hidden_activation(monkeypatch):
    ff = FeedForward(8, 4, 0.0, chunks=3)
    pieces = []
    ff.net.register_forward_hook(lambda module, args, out: pieces.append(args[0].shape[1]))
    x = torch.randn(2, 10, 8)  # a hidden activation of 2 * 10 * 32 values
    for limit, expected in ((FeedForward.UNCHUNKED_HIDDEN, [10]), (640, [10]), (639, [4, 4, 2])):
        monkeypatch.setattr(FeedForward, "UNCHUNKED_HIDDEN", limit)
        pieces.clear()
        ff(x).sum().backward()
        assert pieces == expected


@pytest.mark.parametrize("head,dim", [("regression", 3), ("classification", 3),
                                      ("allocation", 1)])
@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_heads_and_timeframes(head, dim, positional):
    torch.manual_seed(0)
    cfg = EncoderConfig(n_features=5, seq_len=16, attention="nystrom",
                        attention_options={"num_landmarks": 4}, d_model=16, n_layers=1,
                        n_heads=2, head=head, horizon=3, n_timeframes=2, positional=positional)
    out = SeriesEncoder(cfg)(torch.randn(3, 32, 5))
    assert out.shape == (3, dim)
    if head == "allocation":
        assert out.abs().max() <= 1


def _every_position(model: SeriesEncoder, x: torch.Tensor) -> torch.Tensor:
    """The head on the last row of a pass that computes every position in every layer."""
    h = model.embed(x)
    if model.config.reversible:
        x1, x2 = h, h
        for block in model.layers.blocks:
            x1, x2 = block(x1, x2)
        h = (x1 + x2) / 2
    else:
        for layer in model.layers:
            h = layer(h)
    return model.out(model.norm(h[:, -1])) * model.target_scale


@pytest.mark.parametrize("attention,options", [("full", {}), ("linformer", {"k": 16}),
                                               ("reformer", {"bucket_size": 8, "n_hashes": 2}),
                                               ("nystrom", {"num_landmarks": 8})])
@pytest.mark.parametrize("reversible", [False, True])
@pytest.mark.parametrize("timeframes", [1, 2])
def test_the_last_layer_computing_the_last_position_alone_changes_nothing(
        attention, options, reversible, timeframes):
    """The encoder's last layer computes only the position its head reads; the output is
    what computing every position gives, and training (reversible too) still runs."""
    torch.manual_seed(0)
    cfg = EncoderConfig(n_features=5, seq_len=40, attention=attention, attention_options=options,
                        d_model=32, n_layers=3, reversible=reversible, n_timeframes=timeframes,
                        ff_chunks=4 if reversible else 1)
    model = SeriesEncoder(cfg).eval()
    x = torch.randn(3, cfg.tokens, 5)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _every_position(model, x), atol=1e-6, rtol=1e-5)
    model.train()
    model(x).square().sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("attention,options", [("full", {}), ("linformer", {"k": 16}),
                                               ("reformer", {"bucket_size": 8, "n_hashes": 2}),
                                               ("nystrom", {"num_landmarks": 8})])
@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_layers_run_in_row_blocks_without_grad_as_over_the_whole_length(monkeypatch, attention, options,
                                                                         mode):
    """Without gradients a long input's layers run in blocks of rows (in inference mode with
    the feed-forward's GELU fused); the output is what the whole-length ops of a training
    pass give."""
    monkeypatch.setattr(FeedForward, "ROW_BLOCK", 16)
    torch.manual_seed(0)
    cfg = EncoderConfig(n_features=5, seq_len=72, attention=attention, attention_options=options,
                        d_model=32, n_layers=3)
    model = SeriesEncoder(cfg).eval()
    x = torch.randn(2, cfg.tokens, 5)
    with mode():
        blocked = model(x)
    torch.testing.assert_close(blocked, model(x).detach(), atol=1e-6, rtol=1e-5)


def test_feed_forward_in_inference_mode_fuses_its_gelu_for_the_same_values():
    torch.manual_seed(0)
    ff = FeedForward(32, 4, 0.0).eval()
    x = torch.randn(2, onednn.MIN_ROWS, 32)
    calls = []
    ff.net[1].register_forward_hook(lambda module, args, out: calls.append(out))
    with torch.inference_mode():
        fused = ff(x)
    assert onednn.AVAILABLE and not calls
    torch.testing.assert_close(fused, ff(x).detach(), atol=1e-6, rtol=1e-5)
    assert calls


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="unknown head"):
        EncoderConfig(n_features=3, head="ranking")
