"""Customer field rules shared by the API serializers and the customer services."""

import re
from typing import Any

PHONE_PATTERN = re.compile(r"^\+[1-9]\d{6,14}$")
PHONE_MESSAGE = "Must be a phone number in E.164 format: '+', the country code and number, e.g. +14155550100."


def phone_errors(value: Any) -> list[str]:
    """Empty means "no phone"; anything else must be E.164."""
    if value == "":
        return []
    if not isinstance(value, str) or not PHONE_PATTERN.match(value):
        return [PHONE_MESSAGE]
    return []
