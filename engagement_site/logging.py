"""A readable text formatter that still shows the structured context passed as `extra`."""

import logging

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class ContextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRS}
        if context:
            line += " " + " ".join(f"{key}={value}" for key, value in sorted(context.items()))
        return line
