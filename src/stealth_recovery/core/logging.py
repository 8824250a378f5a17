"""Structured logs: events with ids, never a secret, a pay-link token or a full contact.

Every line, ours (structlog) and the libraries' (standard logging: uvicorn's access log, Celery,
SQLAlchemy), goes through one redaction: e-mail addresses and phone numbers are masked, pay-link
tokens in `/pay/…` paths are cut to four characters, and the value of every secret setting is
replaced. Exceptions are rendered as plain tracebacks, never with local variables (a frame's
locals hold passwords, request bodies and decrypted keys), and redacted like the rest.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog

_EMAIL = re.compile(r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+)")
_PHONE = re.compile(r"(?<![\w+])\+\d{5,13}(\d{3})\b")
_PAY_TOKEN = re.compile(r"(/pay/)([A-Za-z0-9_\-]{4})[A-Za-z0-9_\-]{4,}")
# Reset links and invite codes travel in query strings.
_QUERY_TOKEN = re.compile(r"([?&](?:token|invite_code)=)[^&\s\"']+")
_SECRET_MARK = "[secret]"
# Shorter values are too likely to occur in ordinary text to be replaced everywhere.
_MIN_SECRET_LENGTH = 6


class Redactor:
    """Masks contacts, pay-link tokens and the given secret values in any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted(
            {s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True
        )

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, _SECRET_MARK)
        value = _PAY_TOKEN.sub(r"\1\2…", value)
        value = _QUERY_TOKEN.sub(r"\1…", value)
        value = _EMAIL.sub(r"\1***@\2", value)
        return _PHONE.sub(r"***\1", value)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.value(item) for item in value)
        return value

    def __call__(
        self, _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
    ) -> Mapping[str, Any]:
        """structlog processor: runs after the exception is rendered, before the renderer."""
        return {key: self.value(item) for key, item in event_dict.items()}


class RedactingFilter(logging.Filter):
    """Standard-logging handler filter: the same redaction for library log records."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_sr_redacted", False):
            return True
        record.msg = self.redactor.text(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            # A plain traceback (no locals), rendered once here so it can be redacted.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.text(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.text(record.stack_info)
        record._sr_redacted = True
        return True


def install_filter(handlers: Iterable[logging.Handler], redactor: Redactor) -> None:
    """Put the redacting filter on handlers (once each), e.g. those Celery sets up."""
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(redactor))


_redactor = Redactor()


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each record."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def current_redactor() -> Redactor:
    return _redactor


def configure_logging(
    level: str = "INFO",
    json: bool = False,
    *,
    secrets: Iterable[str] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Route structlog and standard logging to `stream` (stderr), both redacted.

    `secrets` are the values to replace wherever they appear; by default every secret setting.
    """
    global _redactor
    if secrets is None:
        from stealth_recovery.core.settings import get_settings

        secrets = get_settings().secret_values()
    _redactor = Redactor(secrets)
    numeric_level = logging.getLevelName(level.upper())
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(RedactingFilter(_redactor))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # Alembic announces every autogenerate plugin at INFO on each start-up migration.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, numeric_level))
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # A plain traceback string: rich's and the dict transformer's show locals.
            structlog.processors.format_exc_info,
            _redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        # Without a stream, each logger takes sys.stdout when made: a replaced and closed stdout
        # (a CLI run inside a test, say) is never written to later.
        logger_factory=structlog.PrintLoggerFactory(stream),
        # Not cached, so a later configure_logging (tests, CLI) reaches every module's logger.
        cache_logger_on_first_use=False,
    )
