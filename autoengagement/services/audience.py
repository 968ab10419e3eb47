"""Who is inactive: the audience of a config at an instant, read set-based in keyset-paginated chunks, each member
with the journey step due to them (docs/journeys.md)."""

import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from django.db import connection
from django.db.models import (
    BigIntegerField,
    Count,
    Exists,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    TextField,
    Value,
)
from django.db.models.functions import Cast, Coalesce

from autoengagement.journeys import Step, journey_of
from autoengagement.models import AutoEngagementConfig
from autoengagement.services.scheduling import local_today
from autoengagement.templating import uses_attributes
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
    "sms_undeliverable_phone",
    "sms_undeliverable_reason",
    "attributes",  # read (as JSON text) only when a template of the config uses an attribute
    "quiet_since",
)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def quiet_since_expression() -> Coalesce:
    """A spell of inactivity starts at the last visit or, for a customer never seen, at their creation."""
    return Coalesce("last_activity_at", "created_at")


def config_journey(config: AutoEngagementConfig, *, template: dict[str, str] | None = None) -> tuple[Step, ...]:
    """The steps a config follows: its `steps`, or the one step of its message (`template`, by default the
    config's), repeated up to `max_reminders` times."""
    return journey_of(
        steps=config.steps,
        message_template=template or config.get_message_template(),
        inactivity_days=config.inactivity_days,
    )


def journey_uses_attributes(journey: tuple[Step, ...]) -> bool:
    """Whether any template of the journey (any step, variant and channel) uses a customer attribute."""
    return any(
        uses_attributes(text)
        for step in journey
        for variant in step.variants
        for content in variant.contents.values()
        for text in (content.header, content.body, content.html)
    )


def first_step_days(config: AutoEngagementConfig) -> int:
    """After how many quiet days a customer enters the audience: the first step's after_days (inactivity_days for
    a config without steps)."""
    return config.steps[0]["after_days"] if config.steps else config.inactivity_days


def inactive_customers(*, config: AutoEngagementConfig, now: dt.datetime) -> QuerySet[Customer]:
    """Customers quiet for at least the first step's days (inactivity_days without steps) and at most
    max_inactivity_days, without any limits on how often they were already reminded. Customers whose personal data
    was erased are never in it."""
    queryset = Customer.objects.filter(business_id=config.business_id, erased_at__isnull=True).annotate(
        quiet_since=quiet_since_expression()
    )
    queryset = queryset.filter(quiet_since__lte=now - dt.timedelta(days=first_step_days(config)))
    if config.max_inactivity_days is not None:
        queryset = queryset.filter(quiet_since__gte=now - dt.timedelta(days=config.max_inactivity_days))
    return queryset


def spell_logs_of(config: AutoEngagementConfig) -> QuerySet[NotificationLog]:
    """The re-engagement rows that count against the once-per-spell guard: every one of the business, whichever
    config wrote it, so a config deleted and created again never messages a customer twice in one spell."""
    return NotificationLog.objects.filter(business_id=config.business_id, type=NotificationLog.Type.AUTO_REENGAGEMENT)


def audience_queryset(
    *, config: AutoEngagementConfig, now: dt.datetime, run_date: dt.date | None = None
) -> QuerySet[Customer]:
    """Inactive customers who may be re-engaged now, each annotated with the `step` due to them. Any logged attempt
    (sent, failed, unknown, skipped, holdout, and a failed one waiting for its retry) counts as a reminder, and the
    reminders of a spell are the distinct run dates of its rows.

    Without steps: fewer than max_reminders reminders in this spell, the last one at least inactivity_days ago (step
    1 every time). With steps: step k = reminders + 1, once quiet for its after_days, never beyond the last step and
    never a second step on one run date (`run_date`, default the business's local date of `now`)."""
    spell_logs = spell_logs_of(config).filter(customer_id=OuterRef("pk"), created_at__gte=OuterRef("quiet_since"))
    queryset = inactive_customers(config=config, now=now)
    if not config.steps and config.max_reminders == 1:
        return queryset.filter(~Exists(spell_logs)).annotate(step=Value(1, output_field=IntegerField()))
    reminders = spell_logs.order_by().values("customer_id").annotate(n=Count("run_date", distinct=True)).values("n")
    queryset = queryset.annotate(reminders=Coalesce(Subquery(reminders), 0))
    if config.steps:
        run_date = run_date or local_today(timezone_name=config.timezone, now=now)
        due = Q()
        for step in config_journey(config):
            due |= Q(reminders=step.number - 1, quiet_since__lte=now - dt.timedelta(days=step.after_days))
        return queryset.filter(due, ~Exists(spell_logs.filter(run_date=run_date))).annotate(step=F("reminders") + 1)
    latest = spell_logs.order_by("-created_at").values("created_at")[:1]
    spacing_cutoff = now - dt.timedelta(days=config.inactivity_days)
    return (
        queryset.annotate(latest_reminder_at=Subquery(latest))
        .filter(
            Q(reminders__lt=config.max_reminders),
            Q(latest_reminder_at__isnull=True) | Q(latest_reminder_at__lte=spacing_cutoff),
        )
        .annotate(step=Value(1, output_field=IntegerField()))
    )


def iter_audience_chunks(
    *,
    config: AutoEngagementConfig,
    now: dt.datetime,
    chunk_size: int,
    customers: tuple[int, int] | None = None,
    run_date: dt.date | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """The audience as lists of plain dicts (no model instances), in primary-key order, each with its due `step`;
    with `customers`, only the customers whose keys fall in that inclusive range. `run_date` is the run's local date
    (default: the business's local date of `now`): a journey sends at most one step per run date.

    Each chunk is three plain index lookups: a keyset page of inactive customers, their logs in this config
    (by customer id), their wallet passes (by customer id); the reminder rule of `audience_queryset` is then
    applied in Python. One query with NOT EXISTS / EXISTS subqueries would say the same, but the planner
    picks its join from table statistics that lag behind a run adding thousands of log rows a second, and a
    wrong guess there turns every chunk into a scan of the whole business.
    """
    fields = [name for name in CANDIDATE_FIELDS if name not in ("attributes", "quiet_since")]
    reads: dict[str, Any] = {}
    with_attributes = journey_uses_attributes(config_journey(config))
    if with_attributes:
        # Read as JSON text and decoded for the audience only (Django's JSON converter would run on every row of
        # every candidate); not read at all when no template uses them.
        reads["attributes_json"] = Cast("attributes", TextField())
    epoch_read = connection.vendor == "postgresql"
    if epoch_read:
        # Django's timestamptz loader for psycopg parses each value in Python (about a fifth of the run's Python
        # time): the spell's start is read as integer microseconds since the epoch instead, the same instant.
        reads["quiet_since_us"] = Func(
            quiet_since_expression(),
            # Equivalent mutants, not tested (pragma): SQL reads its keywords in any case, and the ::bigint cast has
            # the driver return an int whatever the output field says (or if it is left out).
            template="(EXTRACT(EPOCH FROM %(expressions)s) * 1000000)::bigint",  # pragma: no mutate
            output_field=BigIntegerField(),  # pragma: no mutate
        )
    else:
        fields.append("quiet_since")
    candidates = inactive_customers(config=config, now=now).order_by("pk").annotate(**reads).values(*fields, *reads)
    run_date = run_date or local_today(timezone_name=config.timezone, now=now)
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
        members = _not_reminded(config=config, now=now, run_date=run_date, candidates=chunk)
        for member in members:
            member["attributes"] = json.loads(member.pop("attributes_json")) if with_attributes else None
        _mark_wallet_passes(config=config, members=members)
        if members:
            yield members
        if len(chunk) < chunk_size:
            return


def _not_reminded(
    *, config: AutoEngagementConfig, now: dt.datetime, run_date: dt.date, candidates: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The candidates `audience_queryset` keeps, each given its `step`: the reminders (distinct run dates of logged
    re-engagements) since their spell started decide, as `_due_step` says."""
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
    for customer_pk, log_date, created_at in logs:
        if customer_pk in spell_start and created_at >= spell_start[customer_pk]:
            reminders[customer_pk].add(log_date)
            latest[customer_pk] = max(created_at, latest.get(customer_pk, created_at))
    due_step = _due_step(config=config, now=now, run_date=run_date)
    members = []
    for member in candidates:
        pk = member["pk"]
        step = due_step(reminders[pk], latest.get(pk), member["quiet_since"])
        if step:
            member["step"] = step
            members.append(member)
    return members


def _due_step(
    *, config: AutoEngagementConfig, now: dt.datetime, run_date: dt.date
) -> Callable[[set[dt.date], dt.datetime | None, dt.datetime], int]:
    """A function of a candidate's reminder dates in the spell, the latest reminder's instant and the spell's start
    that gives the step due now (0: none).

    Without steps: step 1 while fewer than max_reminders, the latest at least inactivity_days ago. With steps: step
    k = reminders + 1 once quiet for its after_days, none beyond the last step, none when a row of this run date
    exists (one step per run date)."""
    if not config.steps:
        spacing_cutoff = now - dt.timedelta(days=config.inactivity_days)
        max_reminders = config.max_reminders

        def repeated(dates: set[dt.date], latest: dt.datetime | None, quiet_since: dt.datetime) -> int:
            return 1 if len(dates) < max_reminders and (latest is None or latest <= spacing_cutoff) else 0

        return repeated
    # Step k+1 is due to a customer quiet since at most cutoffs[k] with k reminders.
    cutoffs = [now - dt.timedelta(days=step.after_days) for step in config_journey(config)]

    def journey(dates: set[dt.date], latest: dt.datetime | None, quiet_since: dt.datetime) -> int:
        done = len(dates)
        if done >= len(cutoffs) or run_date in dates or quiet_since > cutoffs[done]:
            return 0
        return done + 1

    return journey


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
