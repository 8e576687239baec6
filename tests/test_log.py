"""abaw.log.configure_logging: the ``abaw: <message>`` stderr handler, added once."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from abaw.log import configure_logging


@contextmanager
def bare_abaw_logger() -> Iterator[logging.Logger]:
    """The ``abaw`` logger without handlers (pytest may attach its capture handlers to a
    non-propagating logger for the test's call phase), restored afterwards."""
    logger = logging.getLogger("abaw")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    logger.handlers.clear()
    try:
        yield logger
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]


def test_messages_go_to_stderr_once_with_the_prefix(monkeypatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    with bare_abaw_logger() as logger:
        assert configure_logging() is logger
        configure_logging()  # a second call adds no second handler
        assert len(logger.handlers) == 1 and not logger.propagate
        logging.getLogger("abaw.data.mtl").info("train: %d rows", 3)
        logging.getLogger("abaw.data.mtl").debug("not shown at INFO")
    assert stream.getvalue() == "abaw: train: 3 rows\n"


def test_an_existing_handler_is_left_alone() -> None:
    with bare_abaw_logger() as logger:
        mine = logging.NullHandler()
        logger.addHandler(mine)
        logger.setLevel(logging.WARNING)
        configure_logging(logging.DEBUG)
        assert logger.handlers == [mine] and logger.level == logging.WARNING
