"""Reads of the config and the notification history, scoped to one business."""

import datetime as dt
import logging
import zoneinfo
from typing import Any

from django.db.models import F, QuerySet

from autoengagement.exceptions import ConfigNotFound
from autoengagement.models import AutoEngagementConfig
from engagement_site.validation import timezone_errors
from notifications.models import NotificationLog
from wallet.models import Business

logger = logging.getLogger(__name__)

HISTORY_FIELDS = (
    "notification_id",
    "channel",
    "status",
    "header",
    "body",
    "error",
    "created_at",
    "sent_at",
    "delivered_at",
    "delivery_error",
    "step",
    "variant",
)


def config_find(*, business: Business) -> AutoEngagementConfig | None:
    config = AutoEngagementConfig.objects.filter(business=business).first()
    if config is not None:
        config.business = business
    return config


def config_get(*, business: Business) -> AutoEngagementConfig:
    config = config_find(business=business)
    if config is None:
        raise ConfigNotFound()
    return config


def _local_midnight(day: dt.date, zone: zoneinfo.ZoneInfo) -> dt.datetime | None:
    """The first instant of `day` in `zone`, in UTC; None past the range a datetime can hold."""
    try:
        return dt.datetime.combine(day, dt.time.min, tzinfo=zone).astimezone(dt.UTC)
    except OverflowError:
        return None


def local_dates_to_utc(
    *, date_from: dt.date | None, date_to: dt.date | None, timezone_name: str
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Inclusive local dates as a half-open UTC interval [start, end); None leaves that side open.

    A local midnight that a DST jump skips becomes the first instant of that day, as zoneinfo resolves it.
    """
    zone = zoneinfo.ZoneInfo(timezone_name)
    start = _local_midnight(date_from, zone) if date_from is not None else None
    end = None
    if date_to is not None and date_to < dt.date.max:
        end = _local_midnight(date_to + dt.timedelta(days=1), zone)
    return start, end


def notification_history(
    *,
    business: Business,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    customer_id: str | None = None,
    channel: str | None = None,
    status: str | None = None,
) -> QuerySet[NotificationLog, dict[str, Any]]:
    """The business's auto re-engagement notifications, newest first, as rows ready to serialise, narrowed to one
    customer (by public id), channel or status when given.

    One query per page whatever its size: the customer's public ID comes from a join, not a lookup per row.
    """
    timezone_name = business.timezone
    if timezone_errors(timezone_name):
        # The business row predates zone checks (or was edited by hand): read its days in UTC rather than fail.
        logger.warning("unknown business time zone; using UTC", extra={"business_id": business.business_id})
        timezone_name = "UTC"
    start, end = local_dates_to_utc(date_from=date_from, date_to=date_to, timezone_name=timezone_name)
    rows = NotificationLog.objects.filter(business=business, type=NotificationLog.Type.AUTO_REENGAGEMENT)
    if start is not None:
        rows = rows.filter(created_at__gte=start)
    if end is not None:
        rows = rows.filter(created_at__lt=end)
    if customer_id is not None:
        rows = rows.filter(customer__customer_id=customer_id)
    if channel is not None:
        rows = rows.filter(channel=channel)
    if status is not None:
        rows = rows.filter(status=status)
    return rows.order_by("-created_at", "-id").values(*HISTORY_FIELDS, public_customer_id=F("customer__customer_id"))
