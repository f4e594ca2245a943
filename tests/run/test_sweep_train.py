"""``papertape sweep --strategy model`` with training settings as sweep keys: each trial trains
a tiny model on its training window only (never the held-out part: the held-out bars can be
replaced without changing a bit of the model), trials with the same settings and window share
one cached checkpoint, each trial equals the backtest of its checkpoint, a trial whose
training fails is recorded failed while the sweep goes on, and bad settings stop the sweep
before any trial. The sweeps run from a temporary directory, so the code under test is the
tree's own (from ``tests/``, ``strategies`` would be the tests' package)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.core.config import load_config
from engine.core.typed import ConfigError
from engine.run.sweep import SweepOptions
from engine.run.sweep_space import parse_space
from engine.run.sweep_training import plan_training
from models.checkpoint import load_checkpoint, weights_digest
from tests.helpers.model import ar1_bars, backtest, write_bars
from tests.helpers.sweep import json_of, papertape, query

SETTINGS = {"seq_len": 16, "epochs": 1, "d_model": 16, "layers": 1, "heads": 2, "batch_size": 32,
            "dropout": 0, "features": "log_return"}


def train_args(**drop: bool) -> list[str]:
    return [arg for k, v in SETTINGS.items() if k not in drop for arg in ("--train", f"{k}={v}")]


TRAIN = train_args()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_bars(ar1_bars(600, phi=0.1, seed=3), tmp_path_factory.mktemp("bars") / "bars.csv")


def command(data: Path, where: Path, *args: str, train: list[str] = TRAIN) -> list[str]:
    return ["sweep", "--strategy", "model", "--data", str(data), "--symbol", "BTCUSDT", "--ledger",
            str(where / "ledger.db"), "--json", "--no-progress", *train, *args]


def sweep(data: Path, where: Path, *args: str, train: list[str] = TRAIN) -> dict:
    return json_of(papertape(*command(data, where, *args, train=train), cwd=where))


def meta_of(path: str | Path) -> dict:
    return load_checkpoint(path)[1]


def weights_of(path: str | Path) -> str:
    return weights_digest(load_checkpoint(path)[0].state_dict())


def checkpoint_of(ledger: Path, run_id: int) -> str:
    return json.loads(query(ledger, f"SELECT params FROM runs WHERE id = {int(run_id)}")[0][0])["checkpoint"]


@pytest.fixture(scope="module")
def held_out(data, tmp_path_factory) -> tuple[Path, dict]:
    where = tmp_path_factory.mktemp("holdout")
    return where, sweep(data, where, "--grid", "train.lr=0.001,0.003", "--grid", "threshold=0,0.0005",
                        "--holdout", "0.3", "--top", "2", "--workers", "2")


def test_trials_train_once_per_setting_on_the_search_window(held_out):
    where, out = held_out
    assert {t["status"] for t in out["trials"]} == {"finished"}
    search = [t for t in out["trials"] if t["phase"] == "search"]
    assert [t["params"] for t in search] == [
        {"train.lr": lr, "threshold": th} for lr in (0.001, 0.003) for th in (0.0, 0.0005)]
    cached = sorted((where / "ledger.db.checkpoints").glob("*.pt"))
    assert len(cached) == 2  # two learning rates; the thresholds and the holdout reuse them
    ledger = where / "ledger.db"
    used = {t["params"]["train.lr"]: checkpoint_of(ledger, t["run_id"]) for t in out["trials"]}
    assert sorted(used.values()) == sorted(map(str, cached))
    split_ms = out["best"]["holdout"]["start_ns"] // 1_000_000
    for path in cached:  # the labels of the last window reach at most the split
        window = meta_of(path)["training_window"]
        assert max(t for part in window.values() for t in part) < split_ms
    assert any(t["metrics"]["n_fills"] > 0 for t in search)


def test_a_trial_equals_the_backtest_of_its_checkpoint(held_out, data, tmp_path):
    where, out = held_out
    trial = next(t for t in out["trials"] if t["phase"] == "holdout")
    split_ms = out["best"]["holdout"]["start_ns"] // 1_000_000
    params = {"checkpoint": checkpoint_of(where / "ledger.db", trial["run_id"]),
              "threshold": trial["params"]["threshold"]}
    alone = backtest(data, tmp_path / "alone.db", params, f"run.start={split_ms}", "run.symbol=BTCUSDT")
    assert alone.metrics == trial["metrics"] and alone.metrics["n_fills"] > 0


def test_held_out_bars_never_reach_training(data, tmp_path):
    bars = ar1_bars(600, phi=0.1, seed=3)
    other = ar1_bars(600, phi=-0.3, seed=99, price=20_000.0)
    bars.iloc[420:, 1:] = other.iloc[420:, 1:].to_numpy()  # another market from the split on
    changed = write_bars(bars, tmp_path / "changed.csv")
    places = [tmp_path / "same", tmp_path / "changed"]
    runs = []
    for path, where in zip((data, changed), places, strict=True):  # both at once, one worker each
        where.mkdir()
        runs.append(subprocess.Popen(
            [sys.executable, "-m", "engine.cli", *command(path, where, "--grid", "threshold=0",
                                                          "--holdout", "0.3", "--workers", "1")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=where))
    same, moved = (json_of(subprocess.CompletedProcess(p.args, p.wait(), *p.communicate())) for p in runs)
    split = bars.open_time[420] * 10**6
    assert same["best"]["holdout"]["start_ns"] == moved["best"]["holdout"]["start_ns"] == split
    digests = [[weights_of(p) for p in sorted((w / "ledger.db.checkpoints").glob("*.pt"))] for w in places]
    assert len(digests[0]) == 1 and digests[0] == digests[1]  # the same weights to the bit
    search = [[t["metrics"] for t in o["trials"] if t["phase"] == "search"] for o in (same, moved)]
    assert search[0] == search[1]
    tested = [[t["metrics"] for t in o["trials"] if t["phase"] == "holdout"] for o in (same, moved)]
    assert tested[0] != tested[1]


def test_walk_forward_trains_each_fold_on_its_window_only(data, tmp_path):
    out = sweep(data, tmp_path, "--grid", "threshold=0", "--walk-forward", "2", "--workers", "2")
    folds = out["best"]["walk_forward"]["folds"]
    assert len(list((tmp_path / "ledger.db.checkpoints").glob("*.pt"))) == 2  # one per fold
    for fold in folds:
        end_ms = fold["train"][1] // 1_000_000
        runs = [t["run_id"] for t in out["trials"] if t["phase"] in (f"fold {fold['fold']}",
                                                                      f"fold {fold['fold']} test")]
        paths = {checkpoint_of(tmp_path / "ledger.db", r) for r in runs}
        assert len(paths) == 1
        window = meta_of(paths.pop())["training_window"]
        assert max(t for part in window.values() for t in part) < end_ms


def test_a_failed_training_is_its_trial_alone_and_the_config_table_sweeps(data, tmp_path):
    (tmp_path / "sweep.toml").write_text(
        "[sweep.train]\nepochs = 1\n[sweep.space.train]\nbatch_size = [32, 4096]\n")
    out = sweep(data, tmp_path, "--config", str(tmp_path / "sweep.toml"), "--grid", "threshold=0,0.0005",
                "--workers", "1", train=train_args(batch_size=True))
    ok = [t for t in out["trials"] if t["params"]["train.batch_size"] == 32]
    failed = [t for t in out["trials"] if t["params"]["train.batch_size"] == 4096]
    assert [t["status"] for t in ok] == ["finished"] * 2 and [t["status"] for t in failed] == ["failed"] * 2
    assert all(t["error"].startswith("training failed: too few bars") for t in failed)
    assert out["best"]["trial"] in {t["trial"] for t in ok}
    cache = tmp_path / "ledger.db.checkpoints"  # one training each: the second failure read the first's
    assert len(list(cache.glob("*.pt"))) == len(list(cache.glob("*.failed"))) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--grid", "train.nope=1,2"], "unknown key 'nope'"),
    (["--strategy", "sma_cross", "--grid", "train.lr=0.1"], "trains no model"),
])
def test_bad_training_settings_stop_before_any_trial(data, tmp_path, args, message):
    done = papertape("sweep", "--strategy", "model", "--data", str(data), "--symbol", "BTCUSDT", "--ledger",
                     str(tmp_path / "l.db"), "--no-progress", *TRAIN, *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0
    assert not (tmp_path / "l.db.checkpoints").exists()
    assert not (tmp_path / "l.db").exists()  # refused before the ledger is opened


@pytest.mark.parametrize(("grid", "fixed", "params", "message"), [
    (["train.model=full,bogus"], {}, {}, "--grid train.model=bogus: --train: unknown model 'bogus'"),
    (["train.d_model=16,18", "train.heads=2,4"], {}, {}, "train.d_model=18 train.heads=4: "),
    (["threshold=0"], {"heads": "3"}, {}, "--train: d_model 64 is not divisible by heads 3"),
    (["train.seq_len=4~64"], {"model": "linformer", "attention.k": "32"}, {}, "train.seq_len=4: "),
    (["train.lr=0.1"], {"lr": "0.2"}, {}, "--grid train.lr: also fixed with --train"),
    (["train.lr=0.1"], {}, {"checkpoint": "x.pt"}, "each trial trains its own checkpoint"),
])
def test_each_training_combination_is_checked(grid, fixed, params, message):
    cfg = load_config(None, ["strategy.name=model", *(f"strategy.params.{k}={v}" for k, v in params.items())])
    with pytest.raises(ConfigError, match=re.escape(message)):
        plan_training(cfg, parse_space(grid), fixed, None)


def test_a_model_sweep_without_training_settings_trains_with_the_defaults(tmp_path):
    cfg = load_config(None, ["strategy.name=model", f"ledger.path={tmp_path / 'x.db'}"])
    plan = plan_training(cfg, parse_space(["threshold=0,0.1"]), {}, None)
    assert plan.folder == str(tmp_path / "x.db.checkpoints") and plan.settings({"threshold": 0}) == {}
    assert plan.settings({"train.lr": 0.01, "train.model": "full"}) == {"lr": "0.01", "model": "full"}
    given = load_config(None, ["strategy.name=model", "strategy.params.checkpoint=m.pt"])
    assert plan_training(given, parse_space(["threshold=0,0.1"]), {}, None) is None


def test_the_training_settings_survive_a_resume():
    opts = SweepOptions(space=parse_space(["train.lr=0.001,0.003"]), grid=("train.lr=0.001,0.003",),
                        train=("epochs=1", "model=linformer"), checkpoints="/tmp/cache")
    assert SweepOptions.from_spec(json.loads(json.dumps(opts.spec()))) == opts
