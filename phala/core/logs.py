"""Structured log lines, the same for every process: time, level, component, message."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s level=%(levelname)s component=%(name)s msg=%(message)s",
    )
