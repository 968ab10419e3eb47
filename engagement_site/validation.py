"""Validation rules shared by the apps (a business's time zone, a config's time zone), so they never disagree."""

import zoneinfo
from typing import Any

# The longest IANA name is about 30 characters; the models store 64.
TIMEZONE_MAX_LENGTH = 64


def timezone_errors(value: Any) -> list[str]:
    if not isinstance(value, str) or not value or value != value.strip() or "\x00" in value:
        return ["Must be an IANA time zone name such as 'Europe/Paris'."]
    if len(value) > TIMEZONE_MAX_LENGTH:
        return [f"Must be an IANA time zone name such as 'Europe/Paris', at most {TIMEZONE_MAX_LENGTH} characters."]
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: the name is looked up as a file path ("Europe/Paris/" is a directory, long names are too long).
        return [f"'{value}' is not a known IANA time zone."]
    return []
