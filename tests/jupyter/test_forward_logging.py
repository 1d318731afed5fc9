"""``shows_debug``: whether a debug line would be emitted, with loggers configured the way traitlets configures
Jupyter's (the logger at DEBUG, ``log_level`` on its handler)."""

from __future__ import annotations

import logging
import uuid

from nbmcp.jupyter.forward import shows_debug


def app_logger(*handler_levels: int, level: int = logging.DEBUG) -> logging.Logger:
    """A fresh logger that does not propagate (made in the test itself: pytest adds its capture handlers to
    loggers that exist while it sets a test up)."""
    logger = logging.getLogger(f"shows-debug-test-{uuid.uuid4().hex}")
    logger.setLevel(level)
    logger.propagate = False
    for handler_level in handler_levels:
        handler = logging.NullHandler()
        handler.setLevel(handler_level)
        logger.addHandler(handler)
    return logger


def test_a_debug_logger_whose_handler_shows_info_does_not_show_debug() -> None:
    logger = app_logger(logging.INFO)  # Jupyter's default log_level, on the handler
    assert logger.isEnabledFor(logging.DEBUG)  # why isEnabledFor alone would not do
    assert not shows_debug(logger)


def test_a_debug_handler_shows_debug() -> None:
    assert shows_debug(app_logger(logging.INFO, logging.NOTSET))


def test_a_parents_debug_handler_shows_debug_when_records_propagate() -> None:
    parent = app_logger(logging.DEBUG)
    child = logging.getLogger(f"{parent.name}.ServerApp")
    child.setLevel(logging.DEBUG)
    child.propagate = False
    child.addHandler(logging.NullHandler())
    child.handlers[0].setLevel(logging.INFO)
    assert not shows_debug(child)
    child.propagate = True
    assert shows_debug(child)


def test_a_logger_above_debug_does_not_show_debug() -> None:
    assert not shows_debug(app_logger(logging.NOTSET, level=logging.INFO))
