"""System checks on the daily run's settings, so a bad value fails the deploy instead of the morning run.

autoengagement.E001  a run setting is outside its range (see .env.example).
"""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error

# setting -> (lowest, highest) accepted; None means no upper bound.
RUN_SETTING_RANGES: dict[str, tuple[int, int | None]] = {
    "AUTO_ENGAGEMENT_CHUNK_SIZE": (1, None),
    # A crash loses at most one window per business: kept small on purpose.
    "AUTO_ENGAGEMENT_SEND_WINDOW": (1, 500),
    "AUTO_ENGAGEMENT_MAX_ATTEMPTS": (1, 10),
    "AUTO_ENGAGEMENT_RETRY_BACKOFF_MINUTES": (1, None),
    "AUTO_ENGAGEMENT_BREAKER_THRESHOLD": (1, None),
    "AUTO_ENGAGEMENT_MAX_LATENESS_MINUTES": (0, 24 * 60),
}


def run_settings_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name, (lowest, highest) in RUN_SETTING_RANGES.items():
        value = getattr(settings, name)
        if value < lowest or (highest is not None and value > highest):
            bound = f"between {lowest} and {highest}" if highest is not None else f"at least {lowest}"
            errors.append(Error(f"{name}={value} must be {bound}.", obj=name, id="autoengagement.E001"))
    return errors
