"""Benchmark of the attention kinds at long context (16,384-65,536 bars) on 2 CPU threads.

Inference: per-bar forward passes of a 4-layer, d_model 128 encoder (batch 1, fp32, random
weights) as a live session runs them (``ModelRunner.forward``): median and p99, the ratio to
full attention measured in the same run, and peak memory (growth of the peak resident set
from just before the first forward pass, each case in a fresh process) beside the peak
:mod:`models.budget` expects. Full attention runs only where its forward pass fits the
``--budget-s`` time budget (always at the first length: the baseline of the ratios);
elsewhere the bench prints its refusal. The ratios the targets are judged by are paired: at
the first length every kind runs in one process, the kinds taking turns for ``--paired``
rounds, and each round's ratio to full is taken from forwards made moments apart (full's time
alone swings by 2x between runs on this shared machine); the table's ``x full`` divides the
medians of separate processes, as before.

Training: one step (forward, backward, AdamW) at 16,384 tokens, batch 2, for every kind:
time and peak memory, Reformer with and without reversible layers, the other kinds with
and without gradient checkpointing.

Depth: Reformer's training peak memory at 2, 4 and 8 layers (4,096 tokens, batch 2),
reversible or not: reversible layers keep it flat in depth.

Live: the time from a bar's close to its forecast at 16,384 bars, split into the features
(the rolling window's update) and the forward pass.

Replay (``--replay BARS``): the forecasts of BARS hourly bars at 16,384 computed ahead as a
backtest does, windows side by side: total seconds for each kind; with fewer than the issue's
8,760 bars also that figure extrapolated linearly (the start, features and the runner's
checked first windows, plus the later forecasts' time a forecast scaled to 8,760), labelled as such.

Ceiling: each forward's floating-point operations (torch's FLOP counter, one pass) and the
rate of a feed-forward-shaped GEMM (16,384 x 128 by 128 x 512, oneDNN) measured in the same
process: ``x FLOPs`` is the ratio to full a kind would reach at full's efficiency, and
``ceiling`` the most it could reach if all its FLOPs ran at that GEMM's rate and nothing else
cost time.

Attention settings: linformer k 128, nystrom 64 landmarks, reformer 4 hashes and buckets of 64.

    python bench/long_context.py [--kinds linformer,nystrom] [--repeats N] [--lengths 16384,32768]
        [--paired ROUNDS] [--no-train] [--no-depth] [--no-live] [--replay 8760] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from rss import peak_rss_mb  # noqa: E402

THREADS, D_MODEL, LAYERS, HEADS, FEATURES = 2, 128, 4, 4, 11
KINDS = ("full", "linformer", "nystrom", "reformer")
OPTIONS = {"full": {}, "linformer": {"k": 128}, "nystrom": {"num_landmarks": 64},
           "reformer": {"n_hashes": 4, "bucket_size": 64}}
TARGET = {"linformer": 22.0, "nystrom": 18.0, "reformer": 6.0}  # x faster than full at 16,384
GROWTH = 2.2  # most an efficient kind's time may grow per doubling of the length
ISSUE_BARS = 8760  # the issue's replay: a year of hourly bars


def _config(kind: str, seq: int, reversible: bool | None = None, layers: int = LAYERS):
    from models.train import TrainConfig

    cfg = TrainConfig(model=kind, seq_len=seq, d_model=D_MODEL, layers=layers, heads=HEADS,
                      dropout=0.0, attention_options=OPTIONS[kind], reversible=reversible)
    return cfg.encoder_config(FEATURES)


def _peak_rss() -> int:
    return int(peak_rss_mb() * 1024 * 1024)


def _checkpoint(kind: str, seq: int, path: Path) -> Path:
    """A random-weight checkpoint of the bench encoder, normalised on synthetic bars."""
    import torch
    from model_strategy import klines

    from models.checkpoint import save_checkpoint
    from models.dataset import Normalizer, build_frames
    from models.encoder import SeriesEncoder
    from models.features import FEATURE_VERSION, LOOKBACK, FeatureSet
    from models.features import FEATURES as NAMES

    torch.manual_seed(0)
    bars = klines(seq + 200)
    frames = build_frames(bars, FeatureSet(), "1h")
    norm = Normalizer.fit(frames, FeatureSet().warmup, len(bars) - 1, seq)
    meta = {"features": list(NAMES), "feature_lookback": dict(LOOKBACK), "feature_version": FEATURE_VERSION,
            "normalization": norm.to_dict(), "interval": "1h", "timeframes": [], "seq_len": seq,
            "head": "regression", "horizon": 1, "threshold": None, "training_window": {},
            "metrics": {}, "seed": 0, "code_version": "bench"}
    save_checkpoint(path, SeriesEncoder(_config(kind, seq)), meta)
    return path


def _count_flops(model, seq: int) -> int:
    """Floating-point operations of one forward of ``model`` on a ``seq``-bar window, counted by
    torch (under no_grad, so on the plain linears: oneDNN's ops are not counted, and their
    FLOPs are the same); CPU attention through ``scaled_dot_product_attention`` added."""
    import torch
    from torch.utils import flop_counter

    sdpa = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if sdpa not in flop_counter.flop_registry:
        @flop_counter.register_flop_formula(sdpa)
        def _sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
            batch, heads, queries, width = query
            return 2 * batch * heads * queries * key[-2] * (width + value[-1])

    with torch.no_grad(), flop_counter.FlopCounterMode(display=False) as counter:
        model(torch.randn(1, seq, FEATURES))
    return counter.get_total_flops()


def _gemm_rate(seq: int, repeats: int = 20) -> float:
    """GFLOP/s of the feed-forward's GEMM shape (``seq`` x 128 by 128 x 512) through oneDNN, the
    best of ``repeats``: the rate the encoder's largest products run at on this machine."""
    import torch

    x, w = torch.randn(seq, D_MODEL), torch.randn(4 * D_MODEL, D_MODEL)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats):
            began = time.perf_counter()
            torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
            best = min(best, time.perf_counter() - began)
    return 2 * seq * D_MODEL * 4 * D_MODEL / best / 1e9


def forward_case(case: dict) -> dict:
    """Per-bar forward times of one kind and length, its FLOPs and the GEMM rate beside them
    (in a fresh process)."""
    import torch

    from models.budget import peak_bytes
    from models.runner import ModelRunner

    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        runner = ModelRunner.load(str(_checkpoint(case["kind"], case["seq"], Path(tmp) / "m.pt")))
    window = np.random.default_rng(1).standard_normal((case["seq"], FEATURES)).astype(np.float32)
    base = _peak_rss()
    runner.forward(window)
    times = []
    for _ in range(case["repeats"]):
        began = time.perf_counter()
        runner.forward(window)
        times.append(time.perf_counter() - began)
    peak_mb = (_peak_rss() - base) / 2**20
    return {"median_s": statistics.median(times), "p99_s": float(np.percentile(times, 99)),
            "peak_mb": peak_mb, "expected_mb": peak_bytes(runner.model.config) / 2**20,
            "gflop": _count_flops(runner.model, case["seq"]) / 1e9, "gemm_gflops": _gemm_rate(case["seq"])}


def paired_case(case: dict) -> dict:
    """Per-bar forward times of every kind at one length in one process, the kinds taking turns
    round after round (the order reversed every other round), so that each round's ratios to
    full compare forwards made moments apart: on this shared machine full's own time swings
    between runs (3.3 to 6.5 s at 16,384), which moves ratios made from separate processes.
    An efficient kind's timed forward follows an untimed one of its own: straight after another
    kind's it ran 1.3x slower (its memory cold), which no live session sees."""
    import torch

    from models.runner import ModelRunner

    torch.set_num_threads(THREADS)
    runners = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in case["kinds"]:
            runners[kind] = ModelRunner.load(str(_checkpoint(kind, case["seq"], Path(tmp) / f"{kind}.pt")))
    window = np.random.default_rng(1).standard_normal((case["seq"], FEATURES)).astype(np.float32)
    times: dict[str, list[float]] = {kind: [] for kind in runners}
    for runner in runners.values():
        runner.forward(window)
    for round_ in range(case["rounds"]):
        for kind in (case["kinds"] if round_ % 2 == 0 else case["kinds"][::-1]):
            if kind != "full":  # warm again after the other kinds' forwards, as live repeats one
                runners[kind].forward(window)
            began = time.perf_counter()
            runners[kind].forward(window)
            times[kind].append(time.perf_counter() - began)
    return {"times": times}


def train_case(case: dict) -> dict:
    """One training step's time and peak memory (in a fresh process)."""
    import torch

    from models.allocator import return_freed_memory
    from models.budget import peak_bytes
    from models.encoder import SeriesEncoder

    return_freed_memory()  # as train does for windows this long
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    config = _config(case["kind"], case["seq"], case.get("reversible"), case.get("layers", LAYERS))
    model = SeriesEncoder(config)
    model.checkpointing = case.get("checkpointing", False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randn(case["batch"], case["seq"], FEATURES), torch.randn(case["batch"], 1)
    base = _peak_rss()
    times = []
    for _ in range(case["steps"]):
        began = time.perf_counter()
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - began)
    return {"step_s": min(times), "peak_mb": (_peak_rss() - base) / 2**20,
            "expected_mb": peak_bytes(config, case["batch"], True, model.checkpointing) / 2**20}


def replay_case(case: dict) -> dict:
    """Forecasts of ``bars`` hourly bars computed ahead as a backtest does (windows side by
    side, one per thread): total seconds and when the runner's start was over (the features,
    then its first ``CHECKED_WINDOWS`` forecasts and the thread check that follows them, seen
    at the forecast after them), in a fresh process."""
    import torch
    from model_strategy import klines

    from models.runner import CHECKED_WINDOWS, ModelRunner

    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        runner = ModelRunner.load(str(_checkpoint(case["kind"], case["seq"], Path(tmp) / "m.pt")))
    bars = klines(runner.warmup_bars + case["bars"] - 1)
    wanted = np.ones(len(bars), dtype=bool)
    marks = []
    began = time.perf_counter()
    out = runner.predict_rows(bars, wanted, progress=lambda n: marks.append(time.perf_counter()))
    start = min(CHECKED_WINDOWS + 1, len(marks) - 1)  # marks[0]: the features, then one a forecast
    return {"total_s": time.perf_counter() - began, "setup_s": marks[0] - began,
            "start_s": marks[start] - began, "start_forecasts": start,
            "forecasts": int(np.isfinite(out).all(axis=1).sum())}


def live_case(case: dict) -> dict:
    """Bar close to forecast at ``seq`` bars: the rolling window's update, then the forward."""
    import torch
    from model_strategy import klines

    from models.runner import ModelRunner

    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        runner = ModelRunner.load(str(_checkpoint(case["kind"], case["seq"], Path(tmp) / "m.pt")))
    stream = runner.stream()
    bars = klines(runner.warmup_bars + case["repeats"] + 1).to_dict("records")
    for row in bars[: runner.warmup_bars]:
        stream.push(row)
    features, forward = [], []
    for row in bars[runner.warmup_bars :]:
        began = time.perf_counter()
        window = stream.push(row)
        mid = time.perf_counter()
        runner.forward(window)
        features.append(mid - began)
        forward.append(time.perf_counter() - mid)
    f, w = statistics.median(features), statistics.median(forward)
    return {"features_s": f, "forward_s": w, "total_s": f + w, "features_share": f / (f + w)}


def in_subprocess(case: dict) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], env=env,
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode:
        lines = proc.stderr.strip().splitlines()
        return {**case, "error": lines[-1] if lines else f"exit {proc.returncode}"}
    return {**case, **json.loads(proc.stdout.strip().splitlines()[-1])}


def full_refusal(seq: int, budget_s: float) -> str | None:
    """Why full attention is not run at ``seq`` (the budget's refusal), or None."""
    import torch

    from models.budget import DoesNotFitError, check_forward_time

    torch.set_num_threads(THREADS)
    try:
        check_forward_time(_config("full", seq), budget_s, "the bench's budget per forward pass")
    except DoesNotFitError as exc:
        return str(exc)
    return None


def paired(seq: int, kinds: list[str], rounds: int) -> dict:
    """Each efficient kind's per-round ratios to full at ``seq`` from :func:`paired_case`:
    their median, least and greatest, and the rounds' median times."""
    print(f"  paired forwards of {', '.join(kinds)} at {seq:,}, {rounds} rounds ...", file=sys.stderr)
    row = in_subprocess({"what": "paired", "kinds": kinds, "seq": seq, "rounds": rounds})
    if "times" not in row:
        return row
    full = row["times"]["full"]
    row["ratios"] = {kind: [f / t for f, t in zip(full, times, strict=True)]
                     for kind, times in row["times"].items() if kind != "full"}
    return row


def print_paired(row: dict, say) -> None:
    if "ratios" not in row:
        say(f"\npaired ratios at {row['seq']:,}: {row.get('error')}")
        return
    times = row["times"]
    say(f"\npaired ratios at {row['seq']:,}: {row['rounds']} rounds, every kind's forward in turn in one "
        f"process (full's median {statistics.median(times['full']):.3f} s, "
        f"least {min(times['full']):.3f}, most {max(times['full']):.3f})")
    for kind, ratios in row["ratios"].items():
        target = TARGET.get(kind) if row["seq"] == 16384 else None
        median = statistics.median(ratios)
        passed = "PASS" if target is not None and median >= target else "MISS"
        verdict = "" if target is None else f"  target >= {target:g}  {passed}"
        say(f"  {kind:<10} median {statistics.median(times[kind]):.4f} s, x full {median:5.1f} "
            f"(rounds {min(ratios):.1f} to {max(ratios):.1f}){verdict}")


def inference(lengths: list[int], kinds: list[str], repeats: int, full_repeats: int, budget_s: float,
              say) -> list[dict]:
    rows = []
    for seq in lengths:
        full = full_flop = None
        refused = None if seq == lengths[0] else full_refusal(seq, budget_s)  # the first is the baseline
        if refused:
            say(f"  full at {seq:,}: refused: {refused}")
        for kind in kinds:
            if kind == "full" and refused:
                rows.append({"what": "forward", "kind": kind, "seq": seq, "refused": refused})
                continue
            print(f"  forward {kind} at {seq:,} ...", file=sys.stderr)
            row = in_subprocess({"what": "forward", "kind": kind, "seq": seq,
                                 "repeats": full_repeats if kind == "full" else repeats})
            if kind == "full" and "median_s" in row:
                full = row["median_s"]
            if kind == "full" and "gflop" in row:
                full_flop = row["gflop"]
            if full and "median_s" in row:
                row["x_full"] = full / row["median_s"]
                row["x_flops"] = full_flop / row["gflop"]
                row["ceiling"] = full / (row["gflop"] / row["gemm_gflops"])
            rows.append(row)
    for row in rows:  # growth per doubling of the length
        before = [r for r in rows if r["kind"] == row["kind"] and r["seq"] * 2 == row["seq"]]
        if before and "median_s" in row and "median_s" in before[0]:
            row["growth"] = row["median_s"] / before[0]["median_s"]
    return rows


def print_inference(rows: list[dict], say) -> None:
    say(f"\ninference per bar: batch 1, {LAYERS} layers, d_model {D_MODEL}, fp32, {THREADS} threads")
    say(f"{'kind':<10}{'seq':>7}{'runs':>5}{'median s':>10}{'p99 s':>9}{'x full':>8}{'target':>8}"
        f"{'x/doubling':>11}{'peak MB':>9}{'expect MB':>10}{'GFLOP':>8}{'GFLOP/s':>8}{'x FLOPs':>8}"
        f"{'ceiling':>8}")
    for r in rows:
        if "median_s" not in r:
            say(f"{r['kind']:<10}{r['seq']:>7}  {'refused' if 'refused' in r else r.get('error')}")
            continue
        target = f">= {TARGET[r['kind']]:g}" if r["kind"] in TARGET and r["seq"] == 16384 else ""
        growth = f"{r['growth']:.2f}" if "growth" in r else ""
        x_full, x_flops, ceiling = (f"{r[k]:.1f}" if k in r else "" for k in ("x_full", "x_flops", "ceiling"))
        say(f"{r['kind']:<10}{r['seq']:>7}{r['repeats']:>5}{r['median_s']:>10.4f}{r['p99_s']:>9.4f}"
            f"{x_full:>8}{target:>8}{growth:>11}{r['peak_mb']:>9.0f}{r['expected_mb']:>10.0f}"
            f"{r['gflop']:>8.1f}{r['gflop'] / r['median_s']:>8.1f}{x_flops:>8}{ceiling:>8}")
    say(f"targets at 16,384: linformer >= 22x, nystrom >= 18x, reformer >= 6x faster than full; "
        f"efficient kinds grow <= {GROWTH}x per doubling")
    rates = [r["gemm_gflops"] for r in rows if "gemm_gflops" in r]
    if rates:
        say(f"x FLOPs: full's FLOPs over the kind's; ceiling: full's time over the kind's FLOPs at the "
            f"feed-forward GEMM's rate (median {statistics.median(rates):.1f} GFLOP/s over the cases)")


def training(seq: int, batch: int, steps: int, say) -> list[dict]:
    cases = [{"kind": "full"}, {"kind": "full", "checkpointing": True},
             {"kind": "linformer"}, {"kind": "linformer", "checkpointing": True},
             {"kind": "nystrom"}, {"kind": "nystrom", "checkpointing": True},
             {"kind": "reformer", "reversible": True}, {"kind": "reformer", "reversible": False},
             {"kind": "reformer", "reversible": False, "checkpointing": True}]
    rows = []
    for case in cases:
        print(f"  train {case} at {seq:,} ...", file=sys.stderr)
        rows.append(in_subprocess({"what": "train", "seq": seq, "batch": batch, "steps": steps, **case}))
    say(f"\ntraining step: {seq:,} tokens, batch {batch}, {LAYERS} layers, d_model {D_MODEL}")
    say(f"{'kind':<32}{'step s':>8}{'peak MB':>9}{'expect MB':>10}")
    for r in rows:
        name = r["kind"] + (" reversible" if r.get("reversible") else "") + (
            " checkpointed" if r.get("checkpointing") else "")
        if "step_s" not in r:
            say(f"{name:<32}  {r.get('error')}")
            continue
        say(f"{name:<32}{r['step_s']:>8.2f}{r['peak_mb']:>9.0f}{r['expected_mb']:>10.0f}")
    rev = [r for r in rows if r["kind"] == "reformer" and "peak_mb" in r and not r.get("checkpointing")]
    if len(rev) == 2:
        say(f"reformer reversible / not reversible peak memory: "
            f"{rev[0]['peak_mb'] / rev[1]['peak_mb']:.2f} (target <= 0.5)")
    return rows


def depth(seq: int, batch: int, say) -> list[dict]:
    """Training peak memory of Reformer at 2, 4 and 8 layers, reversible or not."""
    rows = []
    for layers in (2, 4, 8):
        for reversible in (True, False):
            print(f"  train reformer reversible={reversible} {layers} layers at {seq:,} ...", file=sys.stderr)
            rows.append(in_subprocess({"what": "train", "kind": "reformer", "seq": seq, "batch": batch,
                                       "steps": 1, "reversible": reversible, "layers": layers}))
    say(f"\nreformer training peak memory by depth: {seq:,} tokens, batch {batch}")
    say(f"{'layers':>6}{'reversible MB':>15}{'expect MB':>10}{'plain MB':>10}{'expect MB':>10}")
    for rev, plain in zip(rows[::2], rows[1::2], strict=True):
        if "peak_mb" in rev and "peak_mb" in plain:
            say(f"{rev['layers']:>6}{rev['peak_mb']:>15.0f}{rev['expected_mb']:>10.0f}"
                f"{plain['peak_mb']:>10.0f}{plain['expected_mb']:>10.0f}")
    return rows


def replay(seq: int, bars: int, kinds: list[str], say) -> list[dict]:
    rows = []
    for kind in kinds:
        if kind == "full" and full_refusal(seq, 60.0):
            continue
        print(f"  replay {kind}: {bars:,} bars at {seq:,} ...", file=sys.stderr)
        rows.append(in_subprocess({"what": "replay", "kind": kind, "seq": seq, "bars": bars}))
    say(f"\nreplay: forecasts of {bars:,} 1h bars at {seq:,}, windows side by side")
    for r in rows:
        if "total_s" not in r:
            say(f"{r['kind']:<10}  {r.get('error')}")
            continue
        line = f"{r['kind']:<10}{r['total_s']:>10.1f} s  ({r['forecasts']:,} forecasts"
        steady = r["forecasts"] - r["start_forecasts"]
        if bars != ISSUE_BARS and steady > 0:
            each = (r["total_s"] - r["start_s"]) / steady
            r["extrapolated_s"] = r["start_s"] + each * (ISSUE_BARS - r["start_forecasts"])
            line += (f"; extrapolated linearly to {ISSUE_BARS:,} bars: {r['extrapolated_s']:.0f} s = "
                     f"{r['start_s']:.1f} s of start (features {r['setup_s']:.1f} s, the first "
                     f"{r['start_forecasts']} forecasts and the thread check) + {each:.3f} s a "
                     "forecast after")
        say(line + ")")
    return rows


def live(seq: int, repeats: int, kinds: list[str], say) -> list[dict]:
    rows = []
    for kind in (k for k in kinds if k != "full"):
        print(f"  live {kind} at {seq:,} ...", file=sys.stderr)
        rows.append(in_subprocess({"what": "live", "kind": kind, "seq": seq, "repeats": repeats}))
    say(f"\nlive: bar close to forecast at {seq:,} bars (median of {repeats} bars)")
    say(f"{'kind':<10}{'features ms':>12}{'forward ms':>11}{'total ms':>9}{'features':>9}")
    for r in rows:
        if "total_s" not in r:
            say(f"{r['kind']:<10}  {r.get('error')}")
            continue
        say(f"{r['kind']:<10}{r['features_s'] * 1e3:>12.2f}{r['forward_s'] * 1e3:>11.1f}"
            f"{r['total_s'] * 1e3:>9.1f}{r['features_share']:>9.1%}")
    say("target: features under 5% of the time from bar close to forecast")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="16384,32768,65536", help="window lengths (bars)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="attention kinds to run (default all; without full no ratios to it)")
    parser.add_argument("--repeats", type=int, default=10,
                        help="forward passes per efficient kind (default 10)")
    parser.add_argument("--full-repeats", type=int, default=3,
                        help="forward passes of full attention (default 3)")
    parser.add_argument("--paired", type=int, default=5, metavar="ROUNDS",
                        help="rounds of the paired ratios at the first length, every kind's forward in "
                             "turn in one process (default 5; 0 skips them)")
    parser.add_argument("--budget-s", type=float, default=30.0,
                        help="full attention runs only where a forward pass takes at most this (default 30)")
    parser.add_argument("--train-steps", type=int, default=1, help="training steps per case (default 1)")
    parser.add_argument("--no-train", action="store_true", help="skip the training steps")
    parser.add_argument("--no-live", action="store_true", help="skip bar close to forecast")
    parser.add_argument("--no-depth", action="store_true",
                        help="skip Reformer's training memory at 2, 4 and 8 layers (at 4,096 tokens)")
    parser.add_argument("--replay", type=int, default=0, metavar="BARS",
                        help="also time the forecasts of BARS 1h bars at 16,384 as a backtest computes "
                             "them (the issue's figure is 8760, about 8760 x 0.1-0.3 s a kind; fewer are "
                             "also extrapolated linearly to 8760, labelled so)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        case = json.loads(args.case)
        run = {"forward": forward_case, "train": train_case, "live": live_case,
               "replay": replay_case, "paired": paired_case}[case["what"]]
        print(json.dumps(run(case)))
        return 0
    import torch

    say = (lambda *a: None) if args.json else print
    lengths = [int(n) for n in args.lengths.split(",") if n]
    kinds = [k for k in args.kinds.split(",") if k]
    if not kinds or set(kinds) - set(KINDS):
        parser.error(f"--kinds takes a comma-separated list of {', '.join(KINDS)}")
    say(f"torch {torch.__version__}, {THREADS} threads, {os.cpu_count()} CPUs, load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    out = {"inference": inference(lengths, kinds, args.repeats, args.full_repeats, args.budget_s, say)}
    print_inference(out["inference"], say)
    if "full" in kinds and len(kinds) > 1 and args.paired:
        out["paired"] = paired(lengths[0], kinds, args.paired)
        print_paired(out["paired"], say)
    if not args.no_train:
        out["training"] = training(16384, 2, args.train_steps, say)
    if not args.no_depth:
        out["depth"] = depth(4096, 2, say)
    if not args.no_live:
        out["live"] = live(16384, args.repeats, kinds, say)
    if args.replay:
        out["replay"] = replay(16384, args.replay, kinds, say)
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
