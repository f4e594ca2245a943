"""Forward passes over long windows reuse freed memory instead of page-faulting on fresh
mmap pages for every large activation (models/allocator.py), and loading a checkpoint to
trade turns that on; training over long windows gives freed memory back instead, so its
resident peak is the peak of its live tensors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from models import runner as runner_module
from models import train as train_module
from models.allocator import keep_freed_memory
from tests.helpers.model import ar1_bars, train_tiny

ROOT = Path(__file__).resolve().parents[2]

# In a fresh process, as a live session starts: a one-thread Linformer encoder at sequence
# argv[2], d_model argv[3], warmed up, then the minor page faults of one forward pass.
FAULTS_PER_FORWARD = textwrap.dedent("""
    import resource, sys, torch
    from models.allocator import keep_freed_memory
    from models.encoder import EncoderConfig, SeriesEncoder
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    seq, width = int(sys.argv[2]), int(sys.argv[3])
    model = SeriesEncoder(EncoderConfig(n_features=8, seq_len=seq, d_model=width, n_layers=2, n_heads=4,
                                        attention="linformer", attention_options={"k": 64})).eval()
    x = torch.randn(1, seq, 8)
    with torch.inference_mode():
        for _ in range(2):
            model(x)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(3):
            model(x)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3)
""")


def faults_per_forward(mode: str, seq: int = 2048, width: int = 128) -> float:
    done = subprocess.run([sys.executable, "-c", FAULTS_PER_FORWARD, mode, str(seq), str(width)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    return float(done.stdout)


ACTIVATION_PAGES = 2048 * 128 * 4 // 4096  # one [2048, 128] float32 activation: 256 pages


def test_freed_memory_is_reused_instead_of_faulted_in_again():
    plain, kept = faults_per_forward("plain"), faults_per_forward("keep")
    # glibc's defaults: every forward faults in fresh pages, more than one activation's worth
    # (~1,035 on a quiet machine; 458 once in the loaded suite, where the other worker ran too)
    assert plain > ACTIVATION_PAGES, plain
    assert kept < plain / 5, (kept, plain)


def test_activations_past_glibcs_largest_mmap_threshold_are_reused_too():
    # [32768, 256] float32 is 32 MB, glibc's cap on the mmap threshold: mmap'd unless the
    # main arena maps nothing (each such activation is 8,192 fresh pages)
    plain, kept = faults_per_forward("plain", 32768, 256), faults_per_forward("keep", 32768, 256)
    assert plain > 8_192, plain
    assert kept < plain / 5, (kept, plain)


def test_loading_a_checkpoint_keeps_freed_memory(tmp_path, monkeypatch):
    assert keep_freed_memory()  # Linux with glibc, as CI runs
    ckpt = train_tiny(ar1_bars(300, seed=2), "full", tmp_path / "model.pt")
    calls = []
    monkeypatch.setattr(runner_module, "keep_freed_memory", lambda: calls.append(1))
    runner_module.ModelRunner.load(str(ckpt))
    assert calls == [1]


# In a fresh process: 100 freed 2 MB buffers interleaved with small live ones, after a freed
# 2 MB mapping has raised glibc's dynamic threshold: resident MB at the peak and after freeing.
FREED_BUFFERS = textwrap.dedent("""
    import sys, torch
    from models.allocator import return_freed_memory
    if sys.argv[1] == "return":
        assert return_freed_memory()
    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * 4096
    first = torch.ones(1 << 19)
    del first
    base = rss()
    big, small = [], []
    for _ in range(100):
        big.append(torch.ones(1 << 19))
        small.append(torch.ones(16))
    peak = rss()
    del big
    print((peak - base) >> 20, (rss() - base) >> 20)
""")


def resident_mb(mode: str) -> tuple[int, int]:
    done = subprocess.run([sys.executable, "-c", FREED_BUFFERS, mode], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    peak, after = done.stdout.split()
    return int(peak), int(after)


def test_training_mode_gives_freed_buffers_back():
    (plain_peak, plain_after), (peak, after) = resident_mb("plain"), resident_mb("return")
    assert plain_peak >= 190 and peak >= 190  # 100 x 2 MB were resident at once
    assert plain_after > 150, plain_after  # glibc's defaults keep them on the heap
    assert after < 20, after


def test_training_a_long_window_gives_freed_memory_back(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(train_module, "return_freed_memory", lambda: calls.append(1))
    monkeypatch.setattr(train_module, "CHECKED_FROM", 16)  # TINY windows are 16 bars
    train_tiny(ar1_bars(300, seed=2), "full", tmp_path / "model.pt")
    assert calls == [1]
    monkeypatch.setattr(train_module, "CHECKED_FROM", 10**6)
    train_tiny(ar1_bars(300, seed=2), "full", tmp_path / "short.pt")
    assert calls == [1]
