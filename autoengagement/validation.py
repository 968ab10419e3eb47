"""The config rules shared by model validation, the API and admin, so they can never disagree.

The time zone rule is shared with the wallet app (a business's time zone): engagement_site.validation."""

import re
from collections.abc import Mapping
from typing import Any

from autoengagement import journeys
from autoengagement.templating import BODY_MAX_LENGTH, HEADER_MAX_LENGTH, template_errors
from notifications.channels import Channel

RUN_TIME_PATTERN = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
INACTIVITY_DAYS_RANGE = (1, 365)
MAX_INACTIVITY_DAYS_LIMIT = 3650
MAX_REMINDERS_RANGE = (1, 10)
HOLDOUT_PERCENT_RANGE = (0, 50)
ATTRIBUTION_DAYS_RANGE = (1, 90)


def message_template_errors(value: Any) -> list[str]:
    if not isinstance(value, dict):
        return ["Must be an object with 'header' and 'body'."]
    errors = []
    unknown = sorted(set(value) - {"header", "body"})
    if unknown:
        errors.append("Unknown keys: " + ", ".join(unknown) + ".")
    for key, limit in (("header", HEADER_MAX_LENGTH), ("body", BODY_MAX_LENGTH)):
        text = value.get(key)
        if text is None:
            errors.append(f"'{key}' is required.")
        elif not isinstance(text, str):
            errors.append(f"'{key}' must be a string.")
        elif not text.strip():
            errors.append(f"'{key}' may not be empty.")
        elif "\x00" in text:
            # PostgreSQL cannot store it, and no message needs it.
            errors.append(f"'{key}' may not contain null characters.")
        elif len(text) > limit:
            errors.append(f"'{key}' may have at most {limit} characters (it has {len(text)}).")
        else:
            errors.extend(f"'{key}': {error}" for error in template_errors(text))
    return errors


def channels_errors(value: Any) -> list[str]:
    if not isinstance(value, list):
        return ["Must be a list of channels."]
    if not value:
        return ["At least one channel is required."]
    errors = []
    unknown = [item for item in value if not isinstance(item, str) or item not in Channel.values]
    if unknown:
        errors.append(f"Unknown channels: {unknown!r}; allowed: " + ", ".join(Channel.values) + ".")
    if len(set(map(str, value))) != len(value):
        errors.append("Channels must not repeat.")
    return errors


def run_time_errors(value: Any) -> list[str]:
    if not isinstance(value, str) or not RUN_TIME_PATTERN.fullmatch(value):
        return ["Must be a 24-hour time HH:MM, from 00:00 to 23:59."]
    return []


def max_inactivity_days_errors(value: Any, inactivity_days: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int):
        return ["Must be an integer or null."]
    if isinstance(inactivity_days, int) and value <= inactivity_days:
        return [f"Must be greater than inactivity_days ({inactivity_days})."]
    if value > MAX_INACTIVITY_DAYS_LIMIT:
        return [f"Must be at most {MAX_INACTIVITY_DAYS_LIMIT}."]
    return []


# A journey's mirrored fields: with steps set, the seed's fields read as the journey sets them
# (journeys.mirrored_fields), so only the steps may change them.
_SET_BY_STEPS = {
    "inactivity_days": "the first step's after_days ({value})",
    "message_template": "the first step's message",
    "max_reminders": "the number of steps ({value})",
}


def mirrored_field_errors(data: Mapping[str, Any], *, stored_steps: Any) -> dict[str, list[str]]:
    """A write that gives a mirrored field (inactivity_days, message_template, max_reminders) a value other than the
    one the journey in force after it sets (the steps it gives, else the stored ones): an error per such field.
    Giving the journey's own value is fine; so is any value alongside `steps: null`, which leaves the journey."""
    steps = data.get("steps", stored_steps)
    if not steps or journeys.steps_errors(steps):
        return {}
    errors = {}
    for field, value in journeys.mirrored_fields(steps).items():
        if field in data and data[field] != value:
            errors[field] = [
                f"Set by steps: {_SET_BY_STEPS[field].format(value=value)}. Leave it out, change steps, or set steps "
                "to null to choose it yourself."
            ]
    return errors
