"""The project's one error tree.

::

    SupportBotError
    ├── FatalError            stop: retrying cannot help (config, auth, missing index/model)
    │   ├── ConfigError       a missing or malformed setting; message is one user-facing line
    │   ├── ModelLoadError    embedding model not installed / not loadable offline
    │   ├── IndexNotFoundError  no published index in the data dir
    │   ├── IndexCorruptError   a published index folder is incomplete or inconsistent
    │   └── SchemaOutdatedError the database schema is older (or newer) than this version
    ├── TransientError        retry with backoff: network hiccups, 5xx, locked database
    ├── MessageRejectedError  the chat server refused one message; the service goes on
    └── BuildError            an index build failed; the current index is left untouched

Callers decide by class, never by message text: the CLI prints ``str(err)`` of a
``SupportBotError`` as one line and exits non-zero; long-running loops retry only
``TransientError``.
"""

from __future__ import annotations


class SupportBotError(Exception):
    """Base of every error this project raises on purpose."""


class FatalError(SupportBotError):
    """Retrying will not help; stop and tell the operator."""


class TransientError(SupportBotError):
    """Worth retrying after a (capped, jittered) backoff."""


class ConfigError(FatalError):
    """A setting is missing or malformed."""


class ModelLoadError(FatalError):
    """The embedding model cannot be loaded (models are never downloaded at run time)."""


class IndexNotFoundError(FatalError):
    """No index has been published yet in the data directory."""


class IndexCorruptError(FatalError):
    """A published index is unreadable or its parts disagree."""


class SchemaOutdatedError(FatalError):
    """The database schema is not the revision this version needs (``supportbot db upgrade``)."""


class RoomForbiddenError(FatalError):
    """The bot may not join or speak in a room: an operator must invite it or change the
    room's settings."""


class MessageRejectedError(SupportBotError):
    """The chat server refused one message (too large, bad content); others may still go."""


class BuildError(SupportBotError):
    """An index build failed; the previously published index keeps serving."""


class UsageError(SupportBotError):
    """Bad input on the command line (a user name, a password); the message says what to fix."""
