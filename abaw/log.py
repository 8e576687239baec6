"""The toolkit's console logging: ``abaw: <message>`` lines on stderr.

Everything in the package logs under the ``abaw`` logger (``logging.getLogger(__name__)``);
nothing is shown until an entry point (``abaw mtl fit``, a challenge recipe) calls
:func:`configure_logging`. Lightning keeps its own loggers and format.
"""

from __future__ import annotations

import logging
import sys

#: the package's root logger; every module logs below it
LOGGER_NAME = "abaw"
LOG_FORMAT = "abaw: %(message)s"


class StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is when a message is emitted
    (a redirected stream, a test's capture), never to a stream that was closed since the
    handler was made."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the current sys.stderr is always used
        pass


def configure_logging(level: int = logging.INFO) -> logging.Logger:
    """Show the toolkit's messages at ``level`` and above on stderr as ``abaw: <message>``.

    Idempotent: once the ``abaw`` logger has a handler (an earlier call, or an application
    that configured it itself) nothing is changed, so a message is never printed twice.
    The logger does not propagate to the root logger (no second copy in another format).
    Returns the ``abaw`` logger.
    """
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    return logger
