"""Library logs and warnings (diffusers, transformers, huggingface_hub, MLflow) captured instead of printed.

The CLI shows one clear line per failure: genreg's own message, with the library's reason folded in. A library
that logs to stderr while genreg is still deciding whether a step failed would print a second, confusing line.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

LIBRARY_LOGGERS = ("diffusers", "transformers", "huggingface_hub", "mlflow", "alembic", "accelerate")


class _Collector(logging.Handler):
    def __init__(self, messages: list[str]):
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(" ".join(record.getMessage().split()))


@contextlib.contextmanager
def captured_library_logs(names: tuple[str, ...] = LIBRARY_LOGGERS) -> Iterator[list[str]]:
    """Within the block, the libraries' log records of level WARNING and above and Python warnings go to the
    yielded list (one string each) instead of stderr; everything is restored afterwards."""
    messages: list[str] = []
    collector = _Collector(messages)
    saved = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.level, logger.propagate))
        logger.handlers = [collector]
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = lambda message, *args, **kwargs: messages.append(" ".join(str(message).split()))
            yield messages
    finally:
        for logger, handlers, level, propagate in saved:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)


def silence_library_logs(names: tuple[str, ...] = LIBRARY_LOGGERS) -> None:
    """Show only errors of the libraries from now on (the CLI: progress bars and genreg's own lines stay)."""
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)


def folded(messages: list[str], limit: int = 300) -> str:
    """``"; the library said: …"`` for the captured ``messages`` (deduplicated, cut to ``limit``), or ``""``."""
    unique = list(dict.fromkeys(m for m in messages if m))
    if not unique:
        return ""
    text = " | ".join(unique)
    return f"; the library said: {text[:limit]}" + ("…" if len(text) > limit else "")
