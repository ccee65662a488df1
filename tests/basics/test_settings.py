"""Settings: SUPPORTBOT_ environment, .env, TOML file, precedence and readable errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.errors import ConfigError, FatalError
from bot.settings import DEFAULT_MODEL, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SUPPORTBOT_* variable and an empty working directory (no stray toml or .env)."""
    for key in list(os.environ):
        if key.startswith("SUPPORTBOT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_toml(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def test_defaults(tmp_path: Path) -> None:
    s = load_settings()
    assert s.data_dir == Path("data")
    assert s.database_url is None
    assert s.embedding_model == DEFAULT_MODEL
    assert s.device == "auto"
    assert s.embed_batch_size == 64
    assert s.include_keras_api is True
    assert s.reply_threshold == Settings.model_fields["reply_threshold"].default
    assert 0.0 < s.reply_threshold < 1.0
    assert s.max_sources == 3
    assert s.index_root == Path("data") / "indexes"


def test_default_database_is_sqlite_file_in_data_dir(tmp_path: Path) -> None:
    s = load_settings()
    expected = (tmp_path / "data" / "supportbot.db").resolve()
    assert s.resolved_database_url == f"sqlite:///{expected}"
    assert s.resolved_database_url.startswith("sqlite:////")  # absolute path
    other = load_settings(data_dir=tmp_path / "elsewhere")
    assert (
        other.resolved_database_url
        == f"sqlite:///{(tmp_path / 'elsewhere').resolve()}/supportbot.db"
    )
    explicit = load_settings(database_url="postgresql://u@h/db")
    assert explicit.resolved_database_url == "postgresql://u@h/db"


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SUPPORTBOT_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("SUPPORTBOT_EMBED_BATCH_SIZE", "16")
    monkeypatch.setenv("SUPPORTBOT_DEVICE", "cpu")
    monkeypatch.setenv("SUPPORTBOT_INCLUDE_KERAS_API", "false")
    monkeypatch.setenv("SUPPORTBOT_REPLY_THRESHOLD", "0.75")
    monkeypatch.setenv("SUPPORTBOT_EMBEDDING_MODEL", "  /models/mini  ")
    s = load_settings()
    assert s.data_dir == tmp_path / "d"
    assert s.index_root == tmp_path / "d" / "indexes"
    assert s.embed_batch_size == 16
    assert s.device == "cpu"
    assert s.include_keras_api is False
    assert s.reply_threshold == 0.75
    assert s.embedding_model == "/models/mini"  # stripped


def test_unprefixed_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_DIR", "/nowhere")
    monkeypatch.setenv("EMBED_BATCH_SIZE", "0")
    s = load_settings()
    assert s.data_dir == Path("data")
    assert s.embed_batch_size == 64


def test_toml_file_named_by_supportbot_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "conf").mkdir()
    cfg = write_toml(
        tmp_path / "conf" / "bot.toml",
        'data_dir = "/srv/bot"\nembed_batch_size = 8\nreply_threshold = 0.3\n'
        'device = "cuda"\nmax_sources = 5\n',
    )
    monkeypatch.setenv("SUPPORTBOT_CONFIG", str(cfg))
    s = load_settings()
    assert s.data_dir == Path("/srv/bot")
    assert s.embed_batch_size == 8
    assert s.reply_threshold == 0.3
    assert s.device == "cuda"
    assert s.max_sources == 5


def test_supportbot_toml_in_working_directory_is_read(tmp_path: Path) -> None:
    write_toml(tmp_path / "supportbot.toml", "max_sources = 2\n")
    assert load_settings().max_sources == 2


def test_named_config_wins_over_working_directory_toml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_toml(tmp_path / "supportbot.toml", "max_sources = 2\n")
    other = write_toml(tmp_path / "other.toml", "max_sources = 7\n")
    monkeypatch.setenv("SUPPORTBOT_CONFIG", str(other))
    assert load_settings().max_sources == 7


def test_precedence_kwargs_env_dotenv_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = write_toml(
        tmp_path / "c.toml",
        "embed_batch_size = 8\nmax_sources = 5\nreply_threshold = 0.1\nkeep_index_versions = 9\n",
    )
    (tmp_path / ".env").write_text(
        "SUPPORTBOT_MAX_SOURCES=4\nSUPPORTBOT_REPLY_THRESHOLD=0.2\n", encoding="utf-8"
    )
    monkeypatch.setenv("SUPPORTBOT_CONFIG", str(cfg))
    monkeypatch.setenv("SUPPORTBOT_EMBED_BATCH_SIZE", "32")
    monkeypatch.setenv("SUPPORTBOT_REPLY_THRESHOLD", "0.9")
    s = load_settings(reply_threshold=0.6, data_dir=None)
    assert s.reply_threshold == 0.6  # keyword beats env
    assert s.embed_batch_size == 32  # env beats TOML
    assert s.max_sources == 4  # .env beats TOML
    assert s.keep_index_versions == 9  # TOML beats the default
    assert s.data_dir == Path("data")  # None keywords are ignored


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SUPPORTBOT_EMBED_BATCH_SIZE", "0"),
        ("SUPPORTBOT_EMBED_BATCH_SIZE", "lots"),
        ("SUPPORTBOT_DEVICE", "tpu"),
        ("SUPPORTBOT_REPLY_THRESHOLD", "1.5"),
        ("SUPPORTBOT_MAX_SOURCES", "-1"),
        ("SUPPORTBOT_INCLUDE_KERAS_API", "perhaps"),
        ("SUPPORTBOT_EMBEDDING_MODEL", "   "),
        ("SUPPORTBOT_CHUNK_MAX_WORDS", "5"),
    ],
)
def test_invalid_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert "\n" not in message
    assert name in message
    assert isinstance(err.value, FatalError)


def test_several_invalid_values_are_all_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORTBOT_DEVICE", "tpu")
    monkeypatch.setenv("SUPPORTBOT_MAX_SOURCES", "0")
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert "SUPPORTBOT_DEVICE" in message
    assert "SUPPORTBOT_MAX_SOURCES" in message
    assert "\n" not in message


def test_invalid_keyword_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="SUPPORTBOT_MAX_SOURCES"):
        load_settings(max_sources=0)


def test_invalid_and_unknown_toml_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = write_toml(tmp_path / "c.toml", 'reply_threshold = "high"\n')
    monkeypatch.setenv("SUPPORTBOT_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match="SUPPORTBOT_REPLY_THRESHOLD"):
        load_settings()
    write_toml(cfg, "repley_threshold = 0.5\n")
    with pytest.raises(ConfigError, match="SUPPORTBOT_REPLEY_THRESHOLD"):
        load_settings()


@pytest.mark.parametrize("target", ["missing.toml", "."], ids=["missing", "directory"])
def test_supportbot_config_must_name_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, target: str
) -> None:
    monkeypatch.setenv("SUPPORTBOT_CONFIG", str(tmp_path / target))
    with pytest.raises(ConfigError, match="SUPPORTBOT_CONFIG") as err:
        load_settings()
    assert "\n" not in str(err.value)


def test_malformed_toml_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = write_toml(tmp_path / "c.toml", 'data_dir = "unterminated\n')
    monkeypatch.setenv("SUPPORTBOT_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match=r"c\.toml"):
        load_settings()


def test_unsure_reply_defaults_to_the_closest_pages_and_auto_reads_as_that(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().unsure_reply == "closest"
    monkeypatch.setenv("SUPPORTBOT_UNSURE_REPLY", "auto")  # the old default, still accepted
    assert load_settings().unsure_reply == "closest"
    monkeypatch.setenv("SUPPORTBOT_UNSURE_REPLY", "note")
    assert load_settings().unsure_reply == "note"
    monkeypatch.setenv("SUPPORTBOT_UNSURE_REPLY", "loud")
    with pytest.raises(ConfigError, match="SUPPORTBOT_UNSURE_REPLY"):
        load_settings()


def test_deferred_mentions_per_user(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().deferred_mentions_per_user == 3
    monkeypatch.setenv("SUPPORTBOT_DEFERRED_MENTIONS_PER_USER", "0")
    assert load_settings().deferred_mentions_per_user == 0
    monkeypatch.setenv("SUPPORTBOT_DEFERRED_MENTIONS_PER_USER", "-1")
    with pytest.raises(ConfigError, match="SUPPORTBOT_DEFERRED_MENTIONS_PER_USER"):
        load_settings()
