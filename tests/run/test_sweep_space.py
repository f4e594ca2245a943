"""Search spaces (--grid, ranges, sampled spans, [sweep.space]) and the samplers over them."""

import math

import pytest

from engine.core.typed import ConfigError
from engine.run.sweep_samplers import make_sampler
from engine.run.sweep_space import parse_space


def test_lists_ranges_and_spans():
    space = parse_space(["fast=5,10", "slow=20:40:10", "qty=0.001,0.002", "stop=0.001~0.05:log",
                         "mode=a,b"])
    fast, slow, qty, stop, mode = space.dimensions
    assert fast.values == (5, 10) and slow.values == (20, 30, 40) and slow.integer
    assert qty.values == (0.001, 0.002) and mode.values == ("a", "b")
    assert stop.sampled and stop.log and (stop.low, stop.high) == (0.001, 0.05)
    assert not space.discrete and space.size is None
    assert parse_space(["x=0.1:0.3:0.1"]).dimensions[0].values == (0.1, 0.2, 0.3)


def test_the_grid_is_every_point_last_key_fastest():
    space = parse_space(["fast=5,10", "slow=20:40:20"])
    assert space.size == 4
    assert space.grid() == [{"fast": 5, "slow": 20}, {"fast": 5, "slow": 40},
                            {"fast": 10, "slow": 20}, {"fast": 10, "slow": 40}]


def test_the_config_table_and_flags_combine():
    space = parse_space(["slow=30,60"], {"fast": [5, 10, 20], "slow": "20:40:10", "lr": "1e-4~1e-2:log"})
    assert space.names == ["fast", "slow", "lr"]
    assert space.dimension("slow").values == (30, 60)
    assert space.dimension("fast").values == (5, 10, 20)


@pytest.mark.parametrize("grid, message", [
    (["fast"], "is not key=values"),
    (["fast=5:60"], "start:stop:step"),
    (["fast=60:5:5"], "ends"),
    (["fast=5:60:0"], "step must be positive"),
    (["fast=x:60:5"], "is not a number"),
    (["lr=0~1:log"], "positive low end"),
    (["lr=1~1"], "low < high"),
    (["lr=1~2:cubic"], "log or linear"),
    (["fast=5,5"], "twice"),
    ([], "needs a search space"),
])
def test_bad_spaces_are_one_line_errors(grid, message):
    with pytest.raises(ConfigError, match=message):
        parse_space(grid)


def test_grid_refuses_sampled_spans_and_a_trial_budget():
    with pytest.raises(ConfigError, match="--sampler random or tpe"):
        make_sampler("grid", parse_space(["lr=0.1~1"]), None, 0)
    with pytest.raises(ConfigError, match="the grid has 2 points"):
        make_sampler("grid", parse_space(["fast=5,10"]), 5, 0)
    with pytest.raises(ConfigError, match="needs --trials"):
        make_sampler("tpe", parse_space(["fast=5,10"]), None, 0)
    with pytest.raises(ConfigError, match="use one of"):
        make_sampler("annealing", parse_space(["fast=5,10"]), 3, 0)


def _all(sampler, batch=3):
    out = []
    while True:
        got = sampler.ask(batch)
        if not got:
            return out
        for p in got:
            sampler.tell(len(out), p, 0.0)
            out.append(p)


@pytest.mark.parametrize("name", ["random", "tpe"])
def test_samplers_are_seeded_and_stay_in_the_space(name):
    space = parse_space(["fast=5:60:5", "lr=0.001~0.05:log", "n=2~9", "mode=a,b"])
    first = _all(make_sampler(name, space, 12, seed=3))
    assert first == _all(make_sampler(name, space, 12, seed=3))
    assert first != _all(make_sampler(name, space, 12, seed=4))
    assert len(first) == 12
    for p in first:
        assert p["fast"] in range(5, 61, 5) and 0.001 <= p["lr"] <= 0.05
        assert isinstance(p["n"], int) and 2 <= p["n"] <= 9 and p["mode"] in ("a", "b")


def test_random_on_a_grid_draws_distinct_points():
    space = parse_space(["fast=5,10,20", "slow=20,40"])
    points = _all(make_sampler("random", space, 6, seed=1))
    assert sorted(map(repr, points)) == sorted(map(repr, space.grid()))
    with pytest.raises(ConfigError, match="more than the 6 points"):
        make_sampler("random", space, 7, seed=1)


def _objective(p):
    """A planted optimum at x = 137, y = 0.01 (on a log scale)."""
    return -((p["x"] - 137) / 200) ** 2 - (math.log(p["y"] / 0.01) / 9.2) ** 2


def _trials_to_optimum(name: str, seed: int, budget: int = 200) -> int:
    sampler = make_sampler(name, parse_space(["x=1:200:1", "y=0.0001~1:log"]), budget, seed)
    n = 0
    while sampler.remaining():
        for p in sampler.ask(4):
            value = _objective(p)
            sampler.tell(n, p, value)
            n += 1
            if value >= -0.002:
                return n
    return budget


def test_tpe_finds_a_planted_optimum_in_fewer_trials_than_random():
    seeds = range(6)
    tpe = sum(_trials_to_optimum("tpe", s) for s in seeds) / len(seeds)
    rand = sum(_trials_to_optimum("random", s) for s in seeds) / len(seeds)
    assert tpe < rand / 2, (tpe, rand)


def test_the_sweep_table_of_the_config_gives_the_space_and_defaults(tmp_path):
    import argparse

    from engine.commands.sweep import options_from
    from engine.core.config import load_config

    path = tmp_path / "config.toml"
    path.write_text('[sweep]\nsampler = "random"\ntrials = 3\nobjective = "max_drawdown"\n'
                    'constraints = ["fast<slow"]\n[sweep.space]\nfast = [5, 10]\nslow = "20:60:20"\n')
    cfg = load_config(path)
    flags = dict(grid=["slow=30,50"], sampler=None, holdout=None, walk_forward=None, batch=None, top=None,
                 seed=None, trials=None, objective=None, min_trades=None, constraint=["slow<=50"],
                 keep_bars=False, train=[], checkpoints=None)
    opts = options_from(argparse.Namespace(**flags), cfg)
    assert opts.sampler == "random" and opts.trials == 3 and opts.objective == "max_drawdown"
    assert opts.space.dimension("fast").values == (5, 10) and opts.space.dimension("slow").values == (30, 50)
    assert [c.text for c in opts.constraints] == ["fast<slow", "slow<=50"]
    assert opts.constraints[0].holds({"fast": 5, "slow": 30}) and not opts.constraints[1].holds({"slow": 60})
