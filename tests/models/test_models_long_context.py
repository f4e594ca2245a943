"""Long windows (2k-8k tokens at tiny widths): every kind against its reference computation,
the blocked Reformer hashing and backward against all at once, the rolling live window
against windows rebuilt from scratch (and causal), replay against live for every kind,
and the refusals of windows that do not fit."""

import re

import numpy as np
import pytest
import torch
from conftest import synthetic_bars

from models import build_attention
from models.attention import reformer
from models.attention.nystrom import newton_schulz_pinv
from models.budget import DoesNotFitError, check_forward_time, check_memory, forward_seconds
from models.checkpoint import CheckpointError, save_checkpoint
from models.dataset import Normalizer, build_frames
from models.encoder import EncoderConfig, SeriesEncoder
from models.features import FEATURE_VERSION, FEATURES, LOOKBACK, FeatureSet
from models.predictor import Predictor, RollingWindow
from models.runner import ModelRunner

D, H = 16, 2
OPTIONS = {"full": {}, "linformer": {"k": 32}, "nystrom": {"num_landmarks": 16},
           "reformer": {"bucket_size": 64, "n_hashes": 2}}


def _x(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, n, D, generator=torch.Generator().manual_seed(seed))


def _attend(q, k, v):
    """Softmax attention in float64, heads ``[b, h, n, e]``."""
    q, k, v = q.double(), k.double(), v.double()
    return ((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5).softmax(-1) @ v


def _merge(attn, heads: torch.Tensor) -> torch.Tensor:
    b, _, n, _ = heads.shape
    return attn.to_out(heads.float().transpose(1, 2).reshape(b, n, -1))


@pytest.mark.parametrize("last_only", [False, True])
def test_full_attention_at_2048_equals_softmax_attention(last_only):
    torch.manual_seed(0)
    attn, x = build_attention("full", D, H, 2048), _x(2048)
    with torch.no_grad():
        q, k, v = map(attn.split, attn.to_qkv(x).chunk(3, dim=-1))
        want = _merge(attn, _attend(q[:, :, -1:] if last_only else q, k, v))
        torch.testing.assert_close(attn(x, last_only=last_only), want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("last_only", [False, True])
def test_linformer_at_4096_equals_attention_over_its_projected_keys(last_only, mode):
    torch.manual_seed(1)
    attn, x = build_attention("linformer", D, H, 4096, k=32), _x(4096, 1)
    with mode():
        q = attn.split(attn.to_q(x))
        keys = attn.split(attn.to_k(attn.proj_k @ x))
        values = attn.split(attn.to_v(attn.proj_v @ x))
        want = _merge(attn, _attend(q[:, :, -1:] if last_only else q, keys, values))
        torch.testing.assert_close(attn(x, last_only=last_only), want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("last_only", [False, True])
def test_nystrom_at_4096_equals_its_three_kernel_formula(last_only, mode):
    torch.manual_seed(2)
    attn = build_attention("nystrom", D, H, 4096, num_landmarks=16, residual_conv=False)
    x = _x(4096, 2)
    with mode():
        q, k, v = (t.double() for t in map(attn.split, attn.to_qkv(x).chunk(3, dim=-1)))
        q_l, k_l = (t.unflatten(2, (16, -1)).mean(-2) for t in (q, k))
        scale = attn.d_head**-0.5
        kernel = newton_schulz_pinv(((q_l @ k_l.transpose(-1, -2)) * scale).softmax(-1), 20)
        rows = q[:, :, -1:] if last_only else q
        heads = ((rows @ k_l.transpose(-1, -2)) * scale).softmax(-1) @ kernel @ _attend(q_l, k, v)
        torch.testing.assert_close(attn(x, last_only=last_only), _merge(attn, heads), atol=1e-4, rtol=1e-3)


def test_nystrom_with_a_landmark_per_token_equals_full_attention_at_256():
    torch.manual_seed(3)
    x = torch.randn(1, 256, D, dtype=torch.float64) * 0.3  # well-conditioned landmark kernel
    full = build_attention("full", D, H, 256).double()
    nys = build_attention("nystrom", D, H, 256, num_landmarks=256, pinv_iterations=60,
                          residual_conv=False).double()
    nys.load_state_dict(full.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(nys(x, last_only=True), full(x, last_only=True), atol=1e-7, rtol=1e-6)
        torch.testing.assert_close(nys(x), full(x), atol=1e-7, rtol=1e-6)


def test_reformer_at_2048_equals_the_dense_matrix_of_its_rounds(monkeypatch):
    torch.manual_seed(4)
    attn, x = build_attention("reformer", D, H, 2048, bucket_size=64, n_hashes=2), _x(2048, 4)
    monkeypatch.setattr(reformer, "ROWS_BUDGET", 1)  # rounds one at a time, as at 16k
    with torch.no_grad():
        fast, last = attn(x), attn(x, last_only=True)
        _, weights = attn(x, return_weights=True)
        want = _merge(attn, weights.double() @ attn.split(attn.to_v(x)).double())
    torch.testing.assert_close(fast, want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(last, fast[:, -1:], atol=1e-6, rtol=1e-5)


def test_reformer_hashes_blocks_of_positions_as_all_at_once(monkeypatch):
    torch.manual_seed(5)
    attn = build_attention("reformer", D, H, 8192, bucket_size=64, n_hashes=2, n_buckets=128)
    qk = attn.split(attn.to_qk(_x(8192, 5)))
    with torch.no_grad():
        at_once = attn._buckets(qk, 128)
        monkeypatch.setattr(reformer, "HASH_VALUES", 2 * 2 * 64 * 300)  # 300 positions a block
        assert torch.equal(attn._buckets(qk, 128), at_once)


def test_reformer_backward_in_groups_equals_all_at_once(monkeypatch):
    torch.manual_seed(6)
    attn, x = build_attention("reformer", D, H, 2048, bucket_size=64, n_hashes=2), _x(2048, 6)

    def grads():
        attn.zero_grad()
        attn(x).square().sum().backward()
        return [p.grad.clone() for p in attn.parameters()]

    at_once = grads()
    monkeypatch.setattr(reformer, "PROBS_BUDGET", 1)  # one row of the round batch at a time
    for a, b in zip(grads(), at_once, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_rolling_window_keeps_the_last_rows_in_order():
    ring, rows = RollingWindow(5, 2), np.arange(24, dtype=np.float64).reshape(12, 2)
    for i, row in enumerate(rows):
        ring.append(row)
        assert np.array_equal(ring.view(), rows[max(0, i - 4) : i + 1].astype(np.float32))


def _meta(bars, seq_len: int, interval: str = "1h") -> dict:
    frames = build_frames(bars, FeatureSet(), interval)
    norm = Normalizer.fit(frames, FeatureSet().warmup, len(bars) - 1, seq_len)
    return {"features": list(FEATURES), "feature_lookback": dict(LOOKBACK),
            "feature_version": FEATURE_VERSION, "normalization": norm.to_dict(), "interval": interval,
            "timeframes": [], "seq_len": seq_len, "head": "regression", "horizon": 1, "threshold": None,
            "training_window": {}, "metrics": {}, "seed": 0, "code_version": "test"}


def _model(kind: str, seq_len: int) -> SeriesEncoder:
    torch.manual_seed(7)
    return SeriesEncoder(EncoderConfig(n_features=len(FEATURES), seq_len=seq_len, attention=kind,
                                       attention_options=OPTIONS[kind], d_model=D, n_layers=1,
                                       n_heads=H, reversible=kind == "reformer")).eval()


SEQ = 4096


@pytest.fixture(scope="module")
def long_stream():
    """Bars, metadata and the live windows a stream gives bar by bar, at a window of 4096."""
    bars = synthetic_bars(SEQ + 110, seed=9)  # windows from bar 4198 (103 bars of warm-up)
    meta = _meta(bars, SEQ)
    stream = Predictor(_model("linformer", SEQ), meta)
    return bars, meta, [stream.push(row) for row in bars.to_dict("records")]


def test_rolling_window_equals_windows_rebuilt_from_scratch_and_stays_causal(long_stream):
    bars, meta, live = long_stream
    stream = Predictor(_model("linformer", SEQ), meta)
    rebuilt = stream.normalizer.transform(build_frames(bars, stream.feature_set, "1h"))
    ends = np.arange(len(bars) - 8, len(bars))
    for end, window in zip(ends, rebuilt.windows(ends, SEQ), strict=True):
        assert np.array_equal(live[end], window)
    future = bars.copy()  # every bar after the window's end made wild: the batch path must not see it
    end = ends[0]
    future.loc[end + 1 :, ["open", "high", "low", "close"]] *= 3.0
    future.loc[end + 1 :, "volume"] = 1e9
    frames = stream.normalizer.transform(build_frames(future, stream.feature_set, "1h"))
    assert np.array_equal(frames.windows(np.array([end]), SEQ)[0], live[end])
    assert not np.array_equal(frames.windows(np.array([end + 1]), SEQ)[0], live[end + 1])


@pytest.mark.parametrize("kind", OPTIONS)
def test_replay_equals_live_at_a_window_of_4096_for_every_kind(kind, long_stream):
    bars, meta, live = long_stream
    runner = ModelRunner(Predictor(_model(kind, SEQ), meta))
    wanted = np.zeros(len(bars), dtype=bool)
    wanted[-4:] = True
    replay = runner.predict_rows(bars, wanted)
    for row in np.flatnonzero(wanted):
        assert replay[row].tobytes() == runner.forward(live[row]).tobytes()


def _full_config(tokens: int, layers: int = 2) -> EncoderConfig:
    return EncoderConfig(n_features=len(FEATURES), seq_len=tokens, d_model=D, n_layers=layers, n_heads=H)


def test_full_attention_slower_than_its_budget_is_refused_with_what_fits():
    config = _full_config(8192)
    seconds = forward_seconds(config)
    with pytest.raises(DoesNotFitError) as err:
        check_forward_time(config, seconds / 10, "the test's budget")
    message = str(err.value)
    assert "full attention over 8,192 tokens needs about" in message and "the test's budget" in message
    fits = int(re.search(r"at most ([\d,]+) tokens fit", message)[1].replace(",", ""))
    assert 0 < fits < 8192
    assert check_forward_time(config, 100 * seconds + 1, "a generous budget") > 0
    linformer = EncoderConfig(n_features=11, seq_len=8192, attention="linformer")
    assert check_forward_time(linformer, 1e-9, "") == 0


def test_memory_beyond_what_is_available_is_refused_with_the_batch_that_fits():
    config = _full_config(4096, layers=1)
    need = check_memory(config, 8, True, "training full", available=2**40)
    one = check_memory(config, 1, True, "training full", available=2**40)
    assert one < need
    with pytest.raises(DoesNotFitError, match=r"training full needs about .* of memory at its peak "
                                              r"\(full attention, 4,096 tokens, batch 8; .*available: "
                                              r"a batch of [1-7] fits"):
        check_memory(config, 8, True, "training full", available=int(need / 0.9 * 0.7))
    with pytest.raises(DoesNotFitError, match="not even one window fits"):
        check_memory(config, 8, True, "training full", available=one // 2)


def test_a_checkpoint_whose_forward_cannot_keep_up_with_its_bars_is_refused_at_load(tmp_path):
    bars = synthetic_bars(300, step_ms=1000)
    path = tmp_path / "full-65536.pt"
    save_checkpoint(path, SeriesEncoder(_full_config(65536)), _meta(bars, 65536, "1s"))
    with pytest.raises(CheckpointError, match=r"full-65536.pt: full attention over 65,536 tokens needs "
                                              r"about .* more than one 1s bar, in which its forecast must "
                                              r"arrive \(1 s\): at most [\d,]+ tokens fit"):
        ModelRunner.load(str(path))


def test_backtest_and_train_refuse_in_one_line(tmp_path, capsys):
    from engine.bars.kline_files import write_kline_csv
    from engine.cli import main

    bars = synthetic_bars(300, step_ms=1000)
    data = tmp_path / "bars.csv"
    write_kline_csv(bars, data)
    path = tmp_path / "full.pt"
    save_checkpoint(path, SeriesEncoder(_full_config(65536)), _meta(bars, 65536, "1s"))
    argv = ["backtest", "--strategy", "model", "--param", f"checkpoint={path}", "--data", str(data),
            "--ledger", str(tmp_path / "l.db"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs about" in err and "tokens fit" in err
    argv = ["train", "--data", str(data), "--interval", "1s", "--seq-len", "4096", "--batch-size",
            "100000", "--d-model", "16", "--layers", "1", "--heads", "2", "--out", str(tmp_path / "m.pt"),
            "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs about" in err and "a batch of" in err


def test_train_states_the_peak_memory_it_expects(tmp_path, capsys):
    from engine.bars.kline_files import write_kline_csv
    from engine.cli import main

    data = tmp_path / "bars.csv"
    write_kline_csv(synthetic_bars(400), data)
    argv = ["train", "--data", str(data), "--seq-len", "16", "--epochs", "1", "--d-model", "16", "--layers",
            "1", "--heads", "2", "--batch-size", "32", "--checkpointing", "--out", str(tmp_path / "m.pt"),
            "--no-progress"]
    assert main(argv) == 0
    assert re.search(r"train full: expects a peak of about \d+ MB of memory \(16 tokens, batch 32, "
                     r"checkpointed\)", capsys.readouterr().err)


def test_checkpointed_training_gives_the_same_gradients():
    torch.manual_seed(10)
    model = SeriesEncoder(EncoderConfig(n_features=4, seq_len=64, d_model=D, n_layers=3, n_heads=H))
    x = torch.randn(2, 64, 4)

    def grads(checkpointing):
        model.zero_grad()
        model.checkpointing = checkpointing
        model(x).sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    for a, b in zip(grads(True), grads(False), strict=True):
        torch.testing.assert_close(a, b)
