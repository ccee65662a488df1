"""Shared fixtures: the real embedding model (loaded once) and a tiny keras-io-style corpus."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = Path(__file__).parent / "fixtures"
MINI_DOCS = FIXTURES / "keras-io-mini"
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's SUPPORTBOT_* environment or config file."""
    for key in list(os.environ):
        if key.startswith("SUPPORTBOT_") and not key.startswith("SUPPORTBOT_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SUPPORTBOT_DEVICE", "cpu")


@pytest.fixture(scope="session")
def encoder() -> Iterator[object]:
    from bot.retrieval.encoder import Encoder

    yield Encoder("all-MiniLM-L6-v2", device="cpu", batch_size=32)


@pytest.fixture
def mini_docs() -> Path:
    return MINI_DOCS
