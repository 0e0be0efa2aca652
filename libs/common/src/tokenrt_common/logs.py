"""structlog set-up: JSON lines when not on a terminal, pretty output on one.

The request id and any other bound context travel in `structlog.contextvars`, so every
event logged while serving a call carries them.
"""

from __future__ import annotations

import logging
import sys

import structlog

from tokenrt_common.context import add_call_context
from tokenrt_common.settings import Settings


def configure_logging(settings: Settings, service: str) -> structlog.stdlib.BoundLogger:
    """Configure structlog for this process and return the service's logger."""
    level = getattr(logging, settings.log_level.upper())
    pretty = settings.log_format == "console" or (
        settings.log_format == "auto" and sys.stderr.isatty()
    )
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if pretty else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_call_context,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info if not pretty else _identity,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries that log through the standard library (asyncpg, nats) end up on stderr too.
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr, format="%(message)s")
    return structlog.get_logger(service=service)


def _identity(
    logger: object, method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    return event
