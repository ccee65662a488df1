"""index_builder.progress: the log lines a build writes when no terminal shows a bar."""

from __future__ import annotations

import logging

import pytest

from index_builder.progress import ProgressLines


def test_lines_at_start_every_interval_and_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    lines = ProgressLines(5.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="supportbot.progress"):
        advance = lines("embed", 100)
        for _ in range(10):
            now[0] += 1.0  # ten steps of 10 items, one second apart
            advance(10)
        lines("publish", None)(0)
    assert [r.getMessage() for r in caplog.records] == [
        "embed: started, 100 items",
        "embed: 50/100 (50%), 10.0/s",
        "embed: 100/100 (100%), 10.0/s, done in 10.0 s",
        "publish",
    ]


def test_an_empty_phase_and_a_zero_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    lines = ProgressLines(0.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="supportbot.progress"):
        lines("chunk", 0)(0)  # a cached build: nothing to embed
        advance = lines("embed", 2)
        advance(1)
        now[0] = 2.0
        advance(1)
    assert [r.getMessage() for r in caplog.records] == [
        "chunk: started, 0 items",
        "chunk: 0/0 (100%), -, done in 0.0 s",
        "embed: started, 2 items",
        "embed: 1/2 (50%), -",
        "embed: 2/2 (100%), 1.0/s, done in 2.0 s",
    ]
