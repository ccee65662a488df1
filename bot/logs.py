"""Logging set-up: text or JSON lines, room/event ids as fields, secrets scrubbed."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

# Attributes a log call may pass with ``extra=`` that JSON output keeps as fields.
CONTEXT_FIELDS = ("room_id", "event_id", "sender", "outcome", "seconds", "version", "worker")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            if hasattr(record, name):
                data[name] = getattr(record, name)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # may have been scrubbed by ``RedactSecrets`` already
            data["exc"] = record.exc_text
        if record.stack_info:
            data["stack"] = record.stack_info
        return json.dumps(data, ensure_ascii=False, default=str)


# What every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class RedactSecrets(logging.Filter):
    """Replace known secret values in what reaches a handler (defence in depth): the message,
    the exception text and stack of a traceback, and every ``extra=`` field."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 8]

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def _leaks(self, text: str) -> bool:
        return any(s in text for s in self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if self._leaks(message):
            record.msg, record.args = self._scrub(message), None
        if record.exc_info and not record.exc_text:
            # Formatted here, once, so every formatter prints the scrubbed text (they reuse
            # ``exc_text`` when it is set).
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and self._leaks(record.exc_text):
            record.exc_text = self._scrub(record.exc_text)
        if record.stack_info and self._leaks(record.stack_info):
            record.stack_info = self._scrub(record.stack_info)
        for name, value in list(vars(record).items()):
            if name in _RECORD_ATTRS or value is None or isinstance(value, int | float):
                continue
            text = value if isinstance(value, str) else str(value)
            if self._leaks(text):
                setattr(record, name, self._scrub(text))
        return True


def setup_logging(verbose: int, fmt: str = "text") -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    # bm25s sets its own logger to DEBUG when first imported: import it first, then quiet it.
    import bm25s  # noqa: F401

    # Quiet third-party chatter unless asked for debug output.
    for name in ("sentence_transformers", "transformers", "bm25s", "faiss", "httpx"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose >= 2 else logging.ERROR)


def redact(secrets: list[str]) -> None:
    """Scrub these values from every log line from now on."""
    redactor = RedactSecrets(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
