"""The loopback exchange's controls: open on loopback, behind a token beyond it."""

from __future__ import annotations

import argparse

import aiohttp

from engine.loopback.cli import _options, is_loopback, register
from engine.loopback.server import run_exchange
from tests.helpers.loopback import DAY0, make_trades, write_derivatives


async def post_fault(url: str, headers: dict | None = None) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/_control/fault", json={"fault": "drop"}, headers=headers) as resp:
            return resp.status


async def test_a_control_token_is_required_when_set(tmp_path):
    archive = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv", make_trades(50, DAY0, 60))
    async with run_exchange([archive], control_token="s3cret") as srv:
        assert await post_fault(srv.url) == 401
        assert await post_fault(srv.url, {"Authorization": "Bearer wrong"}) == 401
        assert await post_fault(srv.url, {"Authorization": "Bearer s3cret"}) == 200
    async with run_exchange([archive]) as srv:  # loopback default: no token
        assert await post_fault(srv.url) == 200


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["serve-exchange", *argv])


def test_a_host_beyond_loopback_gets_a_generated_token(tmp_path, capsys):
    archive = write_derivatives(tmp_path / "BTCUSDT2025-06-01.csv", make_trades(50, DAY0, 60))
    assert _options(parse("--data", str(archive))).control_token is None
    wide = _options(parse("--data", str(archive), "--host", "0.0.0.0"))
    assert wide.control_token and len(wide.control_token) >= 20
    assert f"Bearer {wide.control_token}" in capsys.readouterr().err
    assert _options(parse("--data", str(archive), "--host", "0.0.0.0", "--token", "t")).control_token == "t"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.com")
