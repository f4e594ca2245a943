"""End to end as a user runs it: ``papertape train`` on the bundled sample, ``papertape
backtest --strategy model`` with the checkpoint, ``papertape report``, each a subprocess."""

from __future__ import annotations

import json

from models.runner import ModelRunner
from tests.helpers.live import ROOT, papertape, query

SAMPLE = str(ROOT / "engine" / "data" / "sample" / "BTCUSDT*.csv.gz")


def test_train_then_backtest_then_report(tmp_path):
    ckpt, ledger = tmp_path / "model.pt", tmp_path / "runs.db"
    done = papertape("train", "--data", SAMPLE, "--interval", "5m", "--model", "linformer", "--seq-len", "16",
                     "--epochs", "2", "--d-model", "16", "--layers", "1", "--heads", "2", "--out", str(ckpt),
                     "--json", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["checkpoint"] == str(ckpt)

    done = papertape("backtest", "--strategy", "model", "--param", f"checkpoint={ckpt}", "--data", SAMPLE,
                     "--interval", "5m", "--ledger", str(ledger), "--json", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "finished" and result["bars"] == 864 and result["fills"] > 0

    done = papertape("report", "--ledger", str(ledger), "--out", str(tmp_path / "report.html"), "--json",
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["run_id"] == result["run_id"] and report["metrics"] == result["metrics"]
    assert (tmp_path / "report.html").stat().st_size > 10_000

    # it traded only after the data the model was trained and validated on
    start_ns = ModelRunner.load(str(ckpt)).trade_from_ms * 1_000_000
    forecasts = query(ledger, "SELECT ts_event, latency_ns, dropped FROM predictions")
    orders = query(ledger, "SELECT ts_init FROM orders")
    assert forecasts.ts_event.min() > start_ns and orders.ts_init.min() > start_ns
    assert len(forecasts) > 100 and (forecasts.dropped == 0).all()
    assert report["forecasts"] == {"forecasts": len(forecasts), "dropped": 0,  # the bar close delay:
                                   "latency_ms_median": 250.0, "latency_ms_p99": 250.0}


def test_a_missing_or_wrong_checkpoint_is_one_line_and_exit_2(tmp_path):
    for params, message in ((["--param", "threshold=0.1"], "checkpoint is required"),
                            (["--param", f"checkpoint={tmp_path / 'nope.pt'}"], "no such checkpoint")):
        done = papertape("backtest", "--strategy", "model", *params, "--ledger", str(tmp_path / "l.db"),
                         "--no-progress", cwd=tmp_path)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
