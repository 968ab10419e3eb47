"""Helpers for management commands: bad input is a usage error (exit 2) that names the argument."""

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

USAGE_ERROR = 2


def usage_error(message: str) -> CommandError:
    return CommandError(message, returncode=USAGE_ERROR)


def validation_to_usage_error(exc: ValidationError, option_names: dict[str, str] | None = None) -> CommandError:
    option_names = option_names or {}
    parts = [
        f"{option_names.get(field, '--' + field)}: {' '.join(messages)}" for field, messages in exc.message_dict.items()
    ]
    return usage_error("; ".join(parts))
