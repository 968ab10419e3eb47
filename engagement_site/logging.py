"""Log formatting shared by every process: ISO 8601 UTC timestamps, the structured context passed as `extra`, and a
context (such as a run's id) carried onto every line logged while it is set, threads included.

`log_context(run_id=...)` sets fields for the lines logged inside it; `ContextFilter` (on the console handler) adds
them to each record; `carry_context(fn)` makes a function run in a thread pool see the caller's context. Text lines
escape control characters in the message and the context, so client text cannot forge log lines.
"""

import contextvars
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pythonjsonlogger.json import JsonFormatter as BaseJsonFormatter

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_fields: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("log_fields", default={})  # noqa: B039
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)} | {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}

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


def iso_utc(record: logging.LogRecord) -> str:
    return dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def escape_controls(text: str) -> str:
    return text.translate(_CONTROL)


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
