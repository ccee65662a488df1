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


SECRET = "syt_secret_token_123"


def _log_with(fmt: str) -> str:
    """Log a token inside an exception and inside ``extra`` fields; return the output."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(message)s %(event_id)s")
    )
    handler.addFilter(RedactSecrets([SECRET]))
    logger = logging.getLogger(f"test.logs.scrub.{fmt}")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        try:
            raise RuntimeError(f"server said: bad token {SECRET}")
        except RuntimeError:
            logger.exception("sync failed", extra={"event_id": f"$e/{SECRET}"})
        logger.info("plain", extra={"event_id": "$e", "outcome": f"header Bearer {SECRET}"})
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_tokens_in_exceptions_and_extra_fields_are_scrubbed_in_text_logs() -> None:
    out = _log_with("text")
    assert SECRET not in out
    assert "RuntimeError: server said: bad token [redacted]" in out
    assert "sync failed $e/[redacted]" in out


def test_tokens_in_exceptions_and_extra_fields_are_scrubbed_in_json_logs() -> None:
    out = _log_with("json")
    assert SECRET not in out
    first, second = (json.loads(line) for line in out.splitlines())
    assert "RuntimeError: server said: bad token [redacted]" in first["exc"]
    assert first["event_id"] == "$e/[redacted]"
    assert second["outcome"] == "header Bearer [redacted]"
