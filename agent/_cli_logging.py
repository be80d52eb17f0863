"""How the ``aimsguard`` commands log: JSON lines on standard error, never on stdout.

stdout carries what a command produces (scan results, a report); logs go to stderr. The
logger is made on whatever ``sys.stderr`` is at the moment a line is logged, not when the
command started: a test runner (or a caller embedding a command) swaps and closes streams,
and a logger holding a closed one would turn every later log line into an error.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

__all__ = ["configure_cli_logging"]


def _stderr_logger(*_: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def configure_cli_logging(level: int = logging.INFO) -> None:
    """Log at ``level`` and above. Document-writing commands pass WARNING: their output is the document."""
    logging.basicConfig(level=level, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call is noise
    if level > logging.INFO:
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
