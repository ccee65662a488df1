"""Matrix room settings: comma lists, the access token (env or private file), room checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.settings import Settings, check_room_settings, load_settings, read_access_token

TOKEN = "syt_a2VyYXMtYm90_SeCrEtToKeNvAlUe_0x1y2z"


@pytest.fixture(autouse=True)
def clean_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty working directory: no stray supportbot.toml or .env is read (conftest clears
    the SUPPORTBOT_* environment)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def token_file(tmp_path: Path, mode: int, content: str = TOKEN + "\n") -> Path:
    path = tmp_path / "token"
    path.write_text(content, encoding="utf-8")
    path.chmod(mode)
    return path


def room_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "matrix_user_id": "@keras-bot:gitter.im",
        "matrix_rooms": "#keras-team/keras:gitter.im",
        "matrix_access_token": TOKEN,
    }
    values.update(overrides)
    return load_settings(**values)


# --- lists ---------------------------------------------------------------------------------------
def test_defaults() -> None:
    s = load_settings()
    assert s.matrix_homeserver == "https://gitter.im"
    assert s.matrix_user_id is None
    assert s.matrix_access_token is None and s.matrix_access_token_file is None
    assert s.matrix_rooms == [] and s.maintainers == [] and s.ignore_users == []
    assert s.reply_to_unmentioned is False


def test_rooms_comma_list_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SUPPORTBOT_MATRIX_ROOMS", " #keras-team/keras:gitter.im , !abc123:gitter.im,, ,!def "
    )
    monkeypatch.setenv("SUPPORTBOT_IGNORE_USERS", "@otherbot:gitter.im,@spam:gitter.im ")
    monkeypatch.setenv("SUPPORTBOT_MAINTAINERS", "@fchollet:gitter.im")
    s = load_settings()
    assert s.matrix_rooms == ["#keras-team/keras:gitter.im", "!abc123:gitter.im", "!def"]
    assert s.ignore_users == ["@otherbot:gitter.im", "@spam:gitter.im"]
    assert s.maintainers == ["@fchollet:gitter.im"]


def test_empty_rooms_env_is_an_empty_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORTBOT_MATRIX_ROOMS", " , ")
    assert load_settings().matrix_rooms == []


def test_lists_from_keywords_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(matrix_rooms=["!a", "#b:c"]).matrix_rooms == ["!a", "#b:c"]
    assert load_settings(matrix_rooms="!a, #b:c").matrix_rooms == ["!a", "#b:c"]
    config = tmp_path / "bot.toml"
    config.write_text('matrix_rooms = ["!x:y", "#z:y"]\nignore_users = "@a:b, @c:d"\n')
    monkeypatch.setenv("SUPPORTBOT_CONFIG", str(config))
    s = load_settings()
    assert s.matrix_rooms == ["!x:y", "#z:y"]
    assert s.ignore_users == ["@a:b", "@c:d"]


def test_bool_and_numbers_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORTBOT_REPLY_TO_UNMENTIONED", "true")
    monkeypatch.setenv("SUPPORTBOT_USER_COOLDOWN_SECONDS", "2.5")
    monkeypatch.setenv("SUPPORTBOT_ROOM_REPLIES_PER_MINUTE", "3")
    s = load_settings()
    assert s.reply_to_unmentioned is True
    assert s.user_cooldown_seconds == 2.5
    assert s.room_replies_per_minute == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SUPPORTBOT_ROOM_REPLIES_PER_MINUTE", "0"),
        ("SUPPORTBOT_BACKOFF_INITIAL_SECONDS", "0"),
        ("SUPPORTBOT_SYNC_TIMEOUT_MS", "-1"),
        ("SUPPORTBOT_HISTORY_DEPTH", "5000"),
    ],
)
def test_out_of_range_room_settings(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name) as info:
        load_settings()
    assert "\n" not in str(info.value)


# --- the token -----------------------------------------------------------------------------------
def test_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORTBOT_MATRIX_ACCESS_TOKEN", f"  {TOKEN}\n")
    assert read_access_token(load_settings()) == TOKEN


def test_token_is_secret_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORTBOT_MATRIX_ACCESS_TOKEN", TOKEN)
    s = load_settings()
    assert TOKEN not in repr(s)
    assert TOKEN not in str(s)
    assert TOKEN not in repr(s.matrix_access_token)
    assert TOKEN not in s.model_dump_json()
    assert s.matrix_access_token is not None
    assert s.matrix_access_token.get_secret_value() == TOKEN


def test_token_from_private_file(tmp_path: Path) -> None:
    path = token_file(tmp_path, 0o600)
    assert read_access_token(load_settings(matrix_access_token_file=path)) == TOKEN
    path.chmod(0o400)
    assert read_access_token(load_settings(matrix_access_token_file=path)) == TOKEN


def test_token_file_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = token_file(tmp_path, 0o600)
    monkeypatch.setenv("SUPPORTBOT_MATRIX_ACCESS_TOKEN_FILE", str(path))
    assert read_access_token(load_settings()) == TOKEN


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602, 0o610])
def test_token_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = token_file(tmp_path, mode)
    with pytest.raises(ConfigError) as info:
        read_access_token(load_settings(matrix_access_token_file=path))
    message = str(info.value)
    assert f"chmod 600 {path}" in message
    assert "SUPPORTBOT_MATRIX_ACCESS_TOKEN_FILE" in message
    assert f"{mode:o}" in message
    assert TOKEN not in message
    assert "\n" not in message


def test_missing_token_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SUPPORTBOT_MATRIX_ACCESS_TOKEN_FILE: cannot read"):
        read_access_token(load_settings(matrix_access_token_file=tmp_path / "absent"))


def test_unreadable_token_path_is_a_config_error(tmp_path: Path) -> None:
    folder = tmp_path / "token-dir"
    folder.mkdir(mode=0o700)
    folder.chmod(0o700)
    with pytest.raises(ConfigError, match="SUPPORTBOT_MATRIX_ACCESS_TOKEN_FILE"):
        read_access_token(load_settings(matrix_access_token_file=folder))


def test_binary_token_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"\xff\xfe\x00binary")
    path.chmod(0o600)
    with pytest.raises(ConfigError):
        read_access_token(load_settings(matrix_access_token_file=path))


def test_env_token_wins_over_the_file(tmp_path: Path) -> None:
    path = token_file(tmp_path, 0o644, "other-token")  # not even checked
    s = load_settings(matrix_access_token=TOKEN, matrix_access_token_file=path)
    assert read_access_token(s) == TOKEN


def test_no_token_names_both_variables() -> None:
    with pytest.raises(ConfigError) as info:
        read_access_token(load_settings())
    message = str(info.value)
    assert "SUPPORTBOT_MATRIX_ACCESS_TOKEN" in message
    assert "SUPPORTBOT_MATRIX_ACCESS_TOKEN_FILE" in message
    assert "\n" not in message


@pytest.mark.parametrize("content", ["", "   \n", "two words", "tab\tinside", "line\nbreak"])
def test_empty_or_malformed_token_file(tmp_path: Path, content: str) -> None:
    path = token_file(tmp_path, 0o600, content)
    with pytest.raises(ConfigError) as info:
        read_access_token(load_settings(matrix_access_token_file=path))
    assert str(info.value) == "the Matrix access token is empty or malformed"


@pytest.mark.parametrize("value", ["", "   ", "abc def"])
def test_empty_or_malformed_env_token(value: str) -> None:
    with pytest.raises(ConfigError, match="empty or malformed"):
        read_access_token(load_settings(matrix_access_token=value))


# --- check_room_settings -------------------------------------------------------------------------
def test_valid_room_settings() -> None:
    check_room_settings(room_settings())
    check_room_settings(
        room_settings(
            matrix_rooms="!opaqueid, !old:gitter.im, #alias:example.org",
            matrix_homeserver="http://localhost:8008",
        )
    )


@pytest.mark.parametrize(
    "user", [None, "", "keras-bot:gitter.im", "@keras-bot", "keras-bot", "#keras-bot:gitter.im"]
)
def test_bad_user_id(user: str | None) -> None:
    s = room_settings(matrix_user_id=user)  # None: not set at all
    with pytest.raises(ConfigError, match="SUPPORTBOT_MATRIX_USER_ID must look like @name:server"):
        check_room_settings(s)


def test_no_rooms() -> None:
    s = room_settings(matrix_rooms=" , ")
    with pytest.raises(ConfigError, match="SUPPORTBOT_MATRIX_ROOMS: name at least one room"):
        check_room_settings(s)


@pytest.mark.parametrize(
    "room", ["general", "!", "#keras", "#", "keras-team/keras", "@keras-bot:gitter.im"]
)
def test_bad_room(room: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_room_settings(room_settings(matrix_rooms=f"!good:x, {room}"))
    message = str(info.value)
    assert message == f"SUPPORTBOT_MATRIX_ROOMS: {room!r} is not a room id or alias"
    assert "\n" not in message


@pytest.mark.parametrize(
    "homeserver", ["gitter.im", "ftp://gitter.im", "", "matrix.org:8448", "HTTPS//x"]
)
def test_bad_homeserver(homeserver: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_room_settings(room_settings(matrix_homeserver=homeserver))
    assert str(info.value) == "SUPPORTBOT_MATRIX_HOMESERVER must be an http(s) URL"


def test_check_room_settings_checks_the_token(tmp_path: Path) -> None:
    path = token_file(tmp_path, 0o644)
    s = room_settings(matrix_access_token=None, matrix_access_token_file=path)
    with pytest.raises(ConfigError, match="chmod 600"):
        check_room_settings(s)
    s = room_settings(matrix_access_token=None)
    with pytest.raises(ConfigError, match="SUPPORTBOT_MATRIX_ACCESS_TOKEN_FILE"):
        check_room_settings(s)


def test_errors_never_show_the_token() -> None:
    for bad in (
        {"matrix_user_id": "nobody"},
        {"matrix_rooms": "general"},
        {"matrix_homeserver": "gitter.im"},
        {"matrix_access_token": TOKEN + " x"},
    ):
        with pytest.raises(ConfigError) as info:
            check_room_settings(room_settings(**bad))
        assert TOKEN not in str(info.value)
