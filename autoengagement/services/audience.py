"""Who is inactive: the audience of a config at an instant, read set-based in keyset-paginated chunks."""

import datetime as dt
import hashlib
from collections.abc import Iterator
from typing import Any

from django.db.models import BooleanField, Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from autoengagement.models import AutoEngagementConfig
from notifications.models import NotificationLog
from wallet.models import Customer, WalletPass

MEMBER_FIELDS = (
    "pk",
    "customer_id",
    "first_name",
    "email",
    "phone",
    "push_token",
    "email_opt_out",
    "sms_opt_out",
    "push_opt_out",
    "quiet_since",
    "has_wallet_pass",
)


def quiet_since_expression() -> Coalesce:
    """A spell of inactivity starts at the last visit or, for a customer never seen, at their creation."""
    return Coalesce("last_activity_at", "created_at")


def inactive_customers(*, config: AutoEngagementConfig, now: dt.datetime) -> QuerySet[Customer]:
    """Customers quiet for at least inactivity_days (and at most max_inactivity_days), without any limits on
    how often they were already reminded."""
    queryset = Customer.objects.filter(business_id=config.business_id).annotate(quiet_since=quiet_since_expression())
    queryset = queryset.filter(quiet_since__lte=now - dt.timedelta(days=config.inactivity_days))
    if config.max_inactivity_days is not None:
        queryset = queryset.filter(quiet_since__gte=now - dt.timedelta(days=config.max_inactivity_days))
    return queryset


def audience_queryset(*, config: AutoEngagementConfig, now: dt.datetime) -> QuerySet[Customer]:
    """Inactive customers who may be re-engaged now: fewer than max_reminders re-engagements in this spell,
    the last one at least inactivity_days ago. Any logged attempt (sent, failed, skipped, holdout) counts."""
    spell_logs = NotificationLog.objects.filter(
        config_id=config.pk, customer_id=OuterRef("pk"), created_at__gte=OuterRef("quiet_since")
    )
    queryset = inactive_customers(config=config, now=now)
    if config.max_reminders == 1:
        return queryset.filter(~Exists(spell_logs))
    reminders = spell_logs.order_by().values("customer_id").annotate(n=Count("run_date", distinct=True)).values("n")
    latest = spell_logs.order_by("-created_at").values("created_at")[:1]
    spacing_cutoff = now - dt.timedelta(days=config.inactivity_days)
    return queryset.annotate(reminders=Coalesce(Subquery(reminders), 0), latest_reminder_at=Subquery(latest)).filter(
        Q(reminders__lt=config.max_reminders),
        Q(latest_reminder_at__isnull=True) | Q(latest_reminder_at__lte=spacing_cutoff),
    )


def iter_audience_chunks(
    *, config: AutoEngagementConfig, now: dt.datetime, chunk_size: int
) -> Iterator[list[dict[str, Any]]]:
    """The audience as lists of plain dicts (no model instances), one query per chunk, in primary-key order."""
    queryset = audience_queryset(config=config, now=now).annotate(
        has_wallet_pass=Exists(WalletPass.objects.filter(customer_id=OuterRef("pk")))
        if "wallet" in config.channels
        else Value(False, output_field=BooleanField())
    )
    last_pk = 0
    while True:
        chunk = list(queryset.filter(pk__gt=last_pk).order_by("pk").values(*MEMBER_FIELDS)[:chunk_size])
        if not chunk:
            return
        yield chunk
        if len(chunk) < chunk_size:
            return
        last_pk = chunk[-1]["pk"]


def in_holdout(*, config_id: str, customer_id: str, spell_start: dt.datetime, holdout_percent: int) -> bool:
    """Deterministic: the same customer and spell land in the same group on every rerun and worker."""
    if holdout_percent <= 0:
        return False
    key = f"{config_id}:{customer_id}:{spell_start.astimezone(dt.UTC).isoformat()}".encode()
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % 100
    return bucket < holdout_percent


def active_after(queryset: QuerySet[NotificationLog]) -> QuerySet[NotificationLog]:
    """Log rows whose customer visited after the row was written (the message must not go out)."""
    return queryset.filter(customer__last_activity_at__gt=F("created_at"))
