"""Log set-up for `voicecalm run`: plain text or one JSON object per line, and the id of the
conversation a log line belongs to (set by `Assistant` for the duration of each turn).

What may be logged where: never secrets (passwords, tokens, API keys) nor raw audio; what users
said and what the bot answered only at DEBUG. URLs with credentials are masked in every line as
a last line of defence.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

FORMATS = ("text", "json")
FORMAT_ENV = "VOICECALM_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WORKER_TEXT_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"  # `run --workers N`

conversation_id: ContextVar[str | None] = ContextVar("voicecalm_conversation_id", default=None)

# scheme://user:password@host → scheme://***@host
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s:@]*:[^/\s@]*@")
# ?token=... (the action server's default token_name), &api_key=..., &password=...
_SECRET_PARAMETERS = re.compile(
    r"(?P<name>[?&](?:token|access_token|api_key|apikey|key|password|secret)=)[^&\s\"']+", re.IGNORECASE
)
# Libraries whose INFO lines print whole request URLs, query (the action server token) included.
QUIET_LOGGERS = ("httpx",)


@contextmanager
def conversation(sender_id: str) -> Iterator[None]:
    """Log lines written inside the block (and in tasks and threads it starts) carry `sender_id`."""
    token = conversation_id.set(sender_id)
    try:
        yield
    finally:
        conversation_id.reset(token)


def mask_secrets(text: str) -> str:
    return _SECRET_PARAMETERS.sub(r"\g<name>***", _URL_CREDENTIALS.sub(r"\g<scheme>***@", text))


class ConversationFilter(logging.Filter):
    """Adds `record.conversation_id` (None outside a turn) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "conversation_id"):
            record.conversation_id = conversation_id.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC, ISO 8601), level, logger, message,
    conversation_id when known, process, and the exception's traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_secrets(record.getMessage()),
        }
        sender_id = getattr(record, "conversation_id", None) or conversation_id.get()
        if sender_id is not None:
            entry["conversation_id"] = sender_id
        entry["process"] = record.process
        if record.exc_info:
            entry["exception"] = mask_secrets(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = mask_secrets(record.exc_text)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def make_handler(log_format: str, stream: Any = None, text_format: str = TEXT_FORMAT) -> logging.Handler:
    if log_format not in FORMATS:
        raise ValueError(f"unknown log format {log_format!r} (one of: {', '.join(FORMATS)})")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(text_format))
    handler.addFilter(ConversationFilter())
    return handler


def configure(level: int | str, log_format: str = "text", stream: Any = None, text_format: str = TEXT_FORMAT) -> None:
    """Send every log record (uvicorn's too, when it is started with `log_config=None`) to one
    handler on the root logger, formatted as `log_format` ("text" or "json")."""
    handler = make_handler(log_format, stream, text_format)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
