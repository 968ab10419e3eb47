"""Log formatting shared by every process: ISO 8601 UTC timestamps, the structured context passed as `extra`, and a
context (such as a run's id) carried onto every line logged while it is set, threads included.

`log_context(run_id=...)` sets fields for the lines logged inside it; `ContextFilter` (on the console handler) adds
them to each record; `carry_context(fn)` makes a function run in a thread pool see the caller's context. Text lines
escape control characters in the message and the context, so client text cannot forge log lines.

`terminal_lines_to(write)` hands the lines the handlers would write to a terminal to `write` instead, whole and
unchanged, so a live progress display can print them above itself instead of having them glued onto its line.
"""

import contextvars
import datetime as dt
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pythonjsonlogger.json import JsonFormatter as BaseJsonFormatter

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_fields: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("log_fields", default={})  # noqa: B039
# Characters that could make one logged text pass for several lines or reorder what a reader sees: C0 and C1
# controls, Unicode line and paragraph separators, bidirectional marks and overrides.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")

T = TypeVar("T")


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    token = _fields.set({**_fields.get(), **fields})
    try:
        yield
    finally:
        _fields.reset(token)


def carry_context(function: Callable[..., T]) -> Callable[..., T]:
    """`function`, run in a copy of the caller's context (thread pools do not carry it on their own)."""
    context = contextvars.copy_context()
    return lambda *args, **kwargs: context.copy().run(function, *args, **kwargs)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _fields.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class _LineWriter:
    """A stream that passes each whole line to `write` (a handler writes a record, then its newline)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._pending = ""

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            self._write(line)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def _terminal(stream: Any) -> str | None:
    """The terminal device `stream` writes to, or None (a file, a pipe, a stream without a descriptor)."""
    try:
        fileno = stream.fileno()
        return os.ttyname(fileno) if os.isatty(fileno) else None
    except (AttributeError, OSError, ValueError):
        return None


def _stream_handlers() -> set[logging.StreamHandler]:
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return {
        handler
        for logger in loggers
        if isinstance(logger, logging.Logger)
        for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler)
    }


@contextmanager
def terminal_lines_to(write: Callable[[str], None], *, terminal: Any) -> Iterator[None]:
    """Inside, the stream handlers writing to the same terminal as the stream `terminal` pass each formatted line to
    `write` instead (the format is the handler's own); those writing to a file or a pipe are left alone."""
    device = _terminal(terminal)
    swapped = {}
    if device is not None:
        for handler in _stream_handlers():
            if _terminal(handler.stream) == device:
                swapped[handler] = handler.setStream(_LineWriter(write))
    try:
        yield
    finally:
        for handler, stream in swapped.items():
            handler.setStream(stream)


def iso_utc(record: logging.LogRecord) -> str:
    return dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def escape_controls(text: str) -> str:
    """`text` with each unprintable character written as its escape (a newline as \\n), so it stays one line."""
    return _UNPRINTABLE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


class ContextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_utc(record)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        line = super().formatMessage(record)
        context = {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRS}
        if context:
            line += " " + " ".join(f"{key}={escape_controls(str(value))}" for key, value in sorted(context.items()))
        return line


def formatters() -> dict[str, dict[str, Any]]:
    """The `formatters` of a logging dictConfig, shared by Django's settings and gunicorn's config."""
    return {
        "text": {"()": "engagement_site.logging.ContextFormatter"},
        "json": {
            "()": "engagement_site.logging.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    }


# gunicorn's access-log atoms (its record's args) kept as fields of a JSON line.
ACCESS_FIELDS = {
    "h": "remote",
    "m": "method",
    "U": "path",
    "s": "status",
    "B": "bytes",
    "M": "duration_ms",
    "a": "agent",
}


class JsonFormatter(BaseJsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_utc(record)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            for atom, name in ACCESS_FIELDS.items():
                if atom in record.args:
                    log_data[name] = record.args[atom]
