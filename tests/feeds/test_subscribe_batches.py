"""Subscribe requests stay within Bybit's limits (BYBIT.md section 5): at most 10 topics a
request (spot's limit) and under 21,000 characters of args, topics in their order."""

from __future__ import annotations

from engine.feeds.live.websocket import MAX_ARGS_CHARS, subscribe_batches


def test_twenty_five_topics_go_in_requests_of_ten_at_most():
    topics = [f"publicTrade.S{i}USDT" for i in range(25)]
    batches = subscribe_batches(topics, 10)
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [t for b in batches for t in b] == topics


def test_long_topics_are_cut_before_the_character_limit():
    topics = [f"publicTrade.{'X' * 5000}{i}" for i in range(9)]
    batches = subscribe_batches(topics, 10)
    assert all(sum(map(len, b)) < MAX_ARGS_CHARS for b in batches)
    assert [len(b) for b in batches] == [4, 4, 1]
    assert [t for b in batches for t in b] == topics
