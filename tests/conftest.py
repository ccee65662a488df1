"""Shared fixtures: the real embedding model (loaded once) and a tiny keras-io-style corpus."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres_server import PostgresServer, postgres_skip_reason
from tests.synapse_server import SynapseServer, synapse_skip_reason

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Password hashes at 2^14 instead of the default 2^17: eight times faster sign-ins, the same
# code paths (bot/web/passwords.py; test_web_auth checks the default on its own).
os.environ.setdefault("SUPPORTBOT_TEST_SCRYPT_N", str(2**14))

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
    monkeypatch.setenv("SUPPORTBOT_WEB_PORT", "0")  # any free port: tests run side by side


@pytest.fixture(scope="session")
def encoder() -> Iterator[object]:
    from bot.retrieval.encoder import Encoder

    yield Encoder("all-MiniLM-L6-v2", device="cpu", batch_size=32)


@pytest.fixture
def mini_docs() -> Path:
    return MINI_DOCS


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """A real Synapse for one test module (skipped only where it is not installed and CI is
    not asking for it: see tests/synapse_server.py)."""
    reason = synapse_skip_reason()
    if reason:
        pytest.skip(reason)
    with SynapseServer(tmp_path_factory.mktemp("synapse")) as server:
        yield server


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One real PostgreSQL for the whole run, started on first use (skipped only where it is
    not installed and CI is not asking for it: see tests/postgres_server.py)."""
    reason = postgres_skip_reason()
    if reason:
        pytest.skip(reason)
    with PostgresServer(tmp_path_factory.mktemp("postgres")) as server:
        yield server


_database_names = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty database: a SQLite file (in a folder not made yet), or a new
    database on the session's PostgreSQL, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'supportbot.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"test_{next(_database_names)}"
    yield server.new_database(name)
    server.drop_database(name)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, encoder: object) -> Path:
    """A tiny published index (keras-io-mini) that room tests copy into each bot's data dir."""
    from bot.settings import load_settings
    from index_builder.build import build_index

    data = tmp_path_factory.mktemp("index-data")
    settings = load_settings(data_dir=data, docs_dir=MINI_DOCS, include_keras_api=False)
    build_index(settings, encoder=encoder)  # type: ignore[arg-type]
    return data / "indexes"
