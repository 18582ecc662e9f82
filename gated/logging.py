"""Logging for the daemon and the commands: structlog, one event per line.

Under systemd (JOURNAL_STREAM is set) or without a terminal the lines are JSON, one object each,
so journald and log shippers keep every field; on a terminal they are the readable console form.
Everything goes to stderr; stdout stays for command output.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def wants_json(fmt: str = "auto", stream=None) -> bool:
    if fmt != "auto":
        return fmt == "json"
    stream = stream or sys.stderr
    return bool(os.environ.get("JOURNAL_STREAM")) or not (hasattr(stream, "isatty") and stream.isatty())


def setup(level: str = "info", fmt: str = "auto", stream=None) -> None:
    """Configure structlog for this process (called once, by `gated run` and `gated doctor`)."""
    stream = stream or sys.stderr
    as_json = wants_json(fmt, stream)
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if as_json:
        renderer = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(sort_keys=False)]
    else:
        renderer = [structlog.dev.ConsoleRenderer(colors=hasattr(stream, "isatty") and stream.isatty())]
    structlog.configure(
        processors=shared + renderer,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # libraries on the standard logging module (paho, gpiozero) go through the same renderer
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name] + shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta] + renderer,
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(LEVELS[level], logging.INFO))


def get(name: str = "gated", **bound):
    return structlog.get_logger(name).bind(**bound) if bound else structlog.get_logger(name)
