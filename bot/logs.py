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
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class RedactSecrets(logging.Filter):
    """Replace known secret values in any message that reaches a handler (defence in depth)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 8]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "[redacted]")
            record.msg, record.args = message, None
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
