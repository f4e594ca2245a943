"""Config loading: defaults, typed values, and one clear line for every mistake."""

from __future__ import annotations

import pytest

from engine.core.config import load_config, parse_time
from engine.core.typed import ConfigError
from engine.run.session import load_strategy


def test_defaults_without_a_file():
    cfg = load_config(None)
    assert cfg.account.cash == 10_000.0 and cfg.broker.fill_at == "next" and cfg.strategy.name == "sma_cross"


def test_the_repo_config_file_loads(tmp_path):
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[2] / "config.toml")
    assert cfg.strategy.params == {"fast": 10, "slow": 30, "qty": 0.01}


def test_the_repo_config_file_shows_every_run_key():
    """config.toml documents every key with its default: ``[run] symbols`` and ``timeframes`` too."""
    import dataclasses
    import re
    from pathlib import Path

    from engine.core.config import RunSection

    text = (Path(__file__).resolve().parents[2] / "config.toml").read_text()
    run = text.split("[run]", 1)[1].split("\n[", 1)[0]
    shown = {f.name for f in dataclasses.fields(RunSection) if re.search(rf"^#? ?{f.name} = ", run, re.M)}
    assert shown == {f.name for f in dataclasses.fields(RunSection)}


@pytest.mark.parametrize("text, overrides, message", [
    ("[broker]\ntaker_fe = 0.1\n", [], "unknown key 'taker_fe'"),
    ("[brokr]\n", [], "unknown section [brokr]"),
    ("[account]\ncash = 'lots'\n", [], "cash: expected a number"),
    ("[broker]\nfill_at = 'open'\n", [], "'open' is not one of 'next', 'close'"),
    ("[account]\ncash = -5\n", [], "cash must be positive"),
    ("[bars]\nclose_delay_ms = 1.5\n", [], "expected a whole number"),
    ("", ["broker.slippage_bps=nan"], "NaN is not allowed"),
    ("", ["broker"], "is not key=value"),
    ("", ["nosection=1"], "use section.key=value"),
    ("not toml [", [], "not valid TOML"),
])
def test_mistakes_are_named(tmp_path, text, overrides, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("/no/such/config.toml")


def test_overrides_convert_types():
    cfg = load_config(None, ["broker.latency_ms=25", "account.cash=500", "strategy.params.fast=3",
                             "run.data=a.csv,b.csv", "broker.taker_fee=none"])
    assert cfg.broker.latency_ms == 25.0 and cfg.account.cash == 500.0
    assert cfg.strategy.params == {"fast": "3"} and cfg.run.data == ("a.csv", "b.csv")
    assert cfg.broker.taker_fee is None


def test_strategy_params_are_typed_and_checked():
    assert load_strategy("sma_cross", {"fast": "3", "slow": "8", "qty": "0.5"}).config.slow == 8
    with pytest.raises(ConfigError, match="unknown key 'fats'"):
        load_strategy("sma_cross", {"fats": "3"})
    with pytest.raises(ConfigError, match="fast < slow"):
        load_strategy("sma_cross", {"fast": "9", "slow": "3"})


def test_times():
    assert parse_time("2025-06-01", "x") == 1748736000 * 10**9
    assert parse_time("2025-06-01T00:00:01.5Z", "x") == 1748736001_500_000_000
    assert parse_time("1748736000000", "x") == 1748736000 * 10**9
    with pytest.raises(ConfigError, match="is not a date"):
        parse_time("yesterday", "--start")
