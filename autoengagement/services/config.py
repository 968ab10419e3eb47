"""Writes of a business's auto-engagement config (the API and any other caller go through here)."""

import logging
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from autoengagement import journeys, validation
from autoengagement.exceptions import ConfigNotFound
from autoengagement.models import AutoEngagementConfig
from engagement_site.validation import timezone_errors
from wallet.models import Business

logger = logging.getLogger(__name__)

CONFIG_EDITABLE_FIELDS = frozenset(
    {
        "enabled",
        "inactivity_days",
        "message_template",
        "steps",
        "channels",
        "run_time",
        "timezone",
        "max_reminders",
        "max_inactivity_days",
        "holdout_percent",
        "attribution_days",
    }
)


@transaction.atomic
def config_upsert(*, business: Business, data: Mapping[str, Any]) -> tuple[AutoEngagementConfig, bool]:
    """Create the config (defaults for what `data` omits) or change only the fields `data` gives.

    A new config takes its business's time zone unless `data` gives one. With `steps` in force (given, or stored
    and not set to null), the fields a journey mirrors (journeys.mirrored_fields) are written from it, and `data`
    may not give them other values. `steps: null` leaves the journey and keeps those fields as they stand.

    Every rule is checked (model.full_clean, the same rules the admin uses) before anything is written,
    and the business row is locked so two concurrent first POSTs cannot both try to create.
    """
    unknown = sorted(set(data) - CONFIG_EDITABLE_FIELDS)
    if unknown:
        raise ValidationError({field: ["This field cannot be set."] for field in unknown})
    list(Business.objects.select_for_update().filter(pk=business.pk).values_list("pk"))
    config = AutoEngagementConfig.objects.filter(business=business).first()
    created = config is None
    if config is None:
        config = AutoEngagementConfig()
        if "timezone" not in data and not timezone_errors(business.timezone):
            config.timezone = business.timezone
    config.business = business
    errors = validation.mirrored_field_errors(data, stored_steps=config.steps)
    for field, value in data.items():
        setattr(config, field, value)
    if config.steps and not journeys.steps_errors(config.steps):
        for field, value in journeys.mirrored_fields(config.steps).items():
            setattr(config, field, value)
    try:
        # The database's CHECK constraints mirror these rules, so checking them again here would only cost queries.
        config.full_clean(exclude={"business"}, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        errors = exc.update_error_dict(errors)
    if errors:
        raise ValidationError(errors)
    config.save()
    logger.info(
        "config saved",
        extra={
            "business_id": business.business_id,
            "config_id": config.config_id,
            "config_created": created,
            "fields": sorted(data),
        },
    )
    return config, created


@transaction.atomic
def config_delete(*, business: Business) -> None:
    """Delete the business's config; its notification history stays (the rows lose their config link)."""
    config = AutoEngagementConfig.objects.select_for_update().filter(business=business).first()
    if config is None:
        raise ConfigNotFound()
    config_id = config.config_id
    config.delete()
    logger.info("config deleted", extra={"business_id": business.business_id, "config_id": config_id})
