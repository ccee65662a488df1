"""JSON log lines carry room/event ids as fields; secrets never reach a log line."""

from __future__ import annotations

import io
import json
import logging

from bot.logs import JsonFormatter, RedactSecrets


def test_json_lines_with_context_and_redaction() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets(["syt_secret_token_123"]))
    logger = logging.getLogger("test.logs")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.info(
            "event %s: %s",
            "$e",
            "replied",
            extra={"room_id": "!r:x", "event_id": "$e", "outcome": "replied"},
        )
        logger.warning("request with Authorization: Bearer %s failed", "syt_secret_token_123")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "event $e: replied" and first["level"] == "info"
    assert (first["room_id"], first["event_id"], first["outcome"]) == ("!r:x", "$e", "replied")
    assert "syt_secret_token_123" not in stream.getvalue()
    assert second["msg"] == "request with Authorization: Bearer [redacted] failed"
