"""Who is inactive: the audience of a config at an instant, read set-based in keyset-paginated chunks."""

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from django.db import connection
from django.db.models import BigIntegerField, Count, Exists, Func, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from autoengagement.models import AutoEngagementConfig
from notifications.models import NotificationLog
from wallet.models import Customer, WalletPass

CANDIDATE_FIELDS = (
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
)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


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


def spell_logs_of(config: AutoEngagementConfig) -> QuerySet[NotificationLog]:
    """The re-engagement rows that count against the once-per-spell guard: every one of the business, whichever
    config wrote it, so a config deleted and created again never messages a customer twice in one spell."""
    return NotificationLog.objects.filter(business_id=config.business_id, type=NotificationLog.Type.AUTO_REENGAGEMENT)


def audience_queryset(*, config: AutoEngagementConfig, now: dt.datetime) -> QuerySet[Customer]:
    """Inactive customers who may be re-engaged now: fewer than max_reminders re-engagements in this spell,
    the last one at least inactivity_days ago. Any logged attempt (sent, failed, unknown, skipped, holdout, and a
    failed one waiting for its retry) counts."""
    spell_logs = spell_logs_of(config).filter(customer_id=OuterRef("pk"), created_at__gte=OuterRef("quiet_since"))
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
    *,
    config: AutoEngagementConfig,
    now: dt.datetime,
    chunk_size: int,
    customers: tuple[int, int] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """The audience as lists of plain dicts (no model instances), in primary-key order; with `customers`, only
    the customers whose keys fall in that inclusive range.

    Each chunk is three plain index lookups: a keyset page of inactive customers, their logs in this config
    (by customer id), their wallet passes (by customer id); the reminder rule of `audience_queryset` is then
    applied in Python. One query with NOT EXISTS / EXISTS subqueries would say the same, but the planner
    picks its join from table statistics that lag behind a run adding thousands of log rows a second, and a
    wrong guess there turns every chunk into a scan of the whole business.
    """
    candidates = inactive_customers(config=config, now=now).order_by("pk")
    epoch_read = connection.vendor == "postgresql"
    if epoch_read:
        # Django's timestamptz loader for psycopg parses each value in Python (about a fifth of the run's Python
        # time): the spell's start is read as integer microseconds since the epoch instead, the same instant.
        candidates = candidates.annotate(
            quiet_since_us=Func(
                quiet_since_expression(),
                # Equivalent mutants, not tested (pragma): SQL reads its keywords in any case, and the ::bigint
                # cast has the driver return an int whatever the output field says (or if it is left out).
                template="(EXTRACT(EPOCH FROM %(expressions)s) * 1000000)::bigint",  # pragma: no mutate
                output_field=BigIntegerField(),  # pragma: no mutate
            )
        ).values(*(name for name in CANDIDATE_FIELDS if name != "quiet_since"), "quiet_since_us")
    else:
        candidates = candidates.values(*CANDIDATE_FIELDS)
    last_pk = 0
    if customers is not None:
        # One part of a business split over several workers (services.parts): its keys, first to last inclusive.
        candidates = candidates.filter(pk__lte=customers[1])
        last_pk = customers[0] - 1
    while True:
        chunk = list(candidates.filter(pk__gt=last_pk)[:chunk_size])
        if not chunk:
            return
        if epoch_read:
            for member in chunk:
                member["quiet_since"] = EPOCH + dt.timedelta(microseconds=member.pop("quiet_since_us"))
        last_pk = chunk[-1]["pk"]
        members = _not_reminded(config=config, now=now, candidates=chunk)
        _mark_wallet_passes(config=config, members=members)
        if members:
            yield members
        if len(chunk) < chunk_size:
            return


def _not_reminded(
    *, config: AutoEngagementConfig, now: dt.datetime, candidates: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The candidates `audience_queryset` keeps: fewer than max_reminders logged re-engagements (distinct run
    dates) since their spell started, the latest at least inactivity_days ago."""
    reminders: dict[int, set[dt.date]] = defaultdict(set)
    latest: dict[int, dt.datetime] = {}
    spell_start = {member["pk"]: member["quiet_since"] for member in candidates}
    # A key range rather than an IN list of thousands of ids: the chunk is in key order, and the few rows of
    # customers in the range who are not candidates are dropped below.
    logs = (
        spell_logs_of(config)
        .filter(
            customer_id__gte=candidates[0]["pk"],
            customer_id__lte=candidates[-1]["pk"],
            created_at__gte=min(spell_start.values()),
        )
        .values_list("customer_id", "run_date", "created_at")
    )
    for customer_pk, run_date, created_at in logs:
        if customer_pk in spell_start and created_at >= spell_start[customer_pk]:
            reminders[customer_pk].add(run_date)
            latest[customer_pk] = max(created_at, latest.get(customer_pk, created_at))
    spacing_cutoff = now - dt.timedelta(days=config.inactivity_days)
    return [
        member
        for member in candidates
        if len(reminders[member["pk"]]) < config.max_reminders
        and (member["pk"] not in latest or latest[member["pk"]] <= spacing_cutoff)
    ]


def _mark_wallet_passes(*, config: AutoEngagementConfig, members: list[dict[str, Any]]) -> None:
    with_pass: set[int] = set()
    if members and "wallet" in config.channels:
        with_pass = set(
            WalletPass.objects.filter(
                customer__business_id=config.business_id,
                customer_id__gte=members[0]["pk"],
                customer_id__lte=members[-1]["pk"],
            )
            .values_list("customer_id", flat=True)
            .distinct()
        )
    for member in members:
        member["has_wallet_pass"] = member["pk"] in with_pass


def in_holdout(*, config_id: str, customer_id: str, spell_start: dt.datetime, holdout_percent: int) -> bool:
    """Deterministic: the same customer and spell land in the same group on every rerun and worker."""
    # Equivalent mutants, not tested (pragma): for 0 or less the bucket test below is False as well, and "big" is
    # int.from_bytes's byte order when none is given (Python 3.11 on).
    if holdout_percent <= 0:  # pragma: no mutate
        return False
    key = f"{config_id}:{customer_id}:{spell_start.astimezone(dt.UTC).isoformat()}".encode()
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % 100  # pragma: no mutate
    return bucket < holdout_percent
