"""One chunk of a business's audience, delivered so that nothing is sent twice and nothing is lost silently.

1. One indexed SELECT finds the chunk's customers who visited since the claim: their rows are written `skipped`
   ("active again"), never sent.
2. One write (COPY on PostgreSQL, else an INSERT) stores every log row: `pending` for messages to send, final
   `skipped` / `holdout` rows for the rest. The unique (business, customer, channel, run_date) constraint turns a
   second attempt into a no-op; only the rows written are sent.
3. Channel by channel, in windows of at most AUTO_ENGAGEMENT_SEND_WINDOW messages, one UPDATE records the previous
   window's outcomes and takes this window's rows from `pending` (or a failed row due for a retry) to `sending`,
   only where they still hold that status; then the backend sends them, outside any transaction.
4. A last UPDATE records the last window's outcomes.
A crash leaves at most one window per business in `sending`: the next run that claims the config marks those rows
`unknown` (they may have gone out, so they are never sent again) and sends the rows still `pending` as usual.

Each result becomes the row's final status (sent, unknown, skipped, failed), except a failure the provider provably
did not act on: that row stays `failed` with a `next_attempt_at`, and a later invocation of the same local day sends
it again on the same row (see autoengagement.services.retries), at most AUTO_ENGAGEMENT_MAX_ATTEMPTS times.
"""

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from autoengagement.journeys import Content, Step, variant_for
from autoengagement.models import AutoEngagementConfig
from autoengagement.services.audience import config_journey, in_holdout
from autoengagement.templating import formatter
from engagement_site.db import bulk_insert_rows, bulk_update_rows
from engagement_site.secure_ids import IdKind, make_ids
from notifications import consent
from notifications.backends.base import ChannelBackend, Message, Result, not_attempted
from notifications.channels import Channel
from notifications.models import NotificationLog
from wallet.models import Business, Customer
from webhooks.events import EventType, FailureCode
from webhooks.services import Subscriptions, subscriptions, write_events

logger = logging.getLogger(__name__)

ACTIVE_AGAIN = "active again"
NO_RESULT = "the channel backend returned no result for this message; it may have been sent"
UNKNOWN_AFTER_ERROR = "the run stopped while the provider had this message; it may have been sent"
RETRIES_EXHAUSTED = "no attempts left today"
CONSENT_REVOKED = consent.PROVIDER_REVOKED
FIRST_NAME_FALLBACK = "there"

Status = NotificationLog.Status

# channel -> (customer field, value) applied when a provider says the recipient revoked consent
REVOCATIONS: dict[str, tuple[str, object]] = {
    Channel.EMAIL: ("email_opt_out", True),
    Channel.SMS: ("sms_opt_out", True),
    Channel.PUSH: ("push_token", ""),
}


# The totals a tally adds up field by field (`skipped` adds up with its reasons).
TALLY_TOTALS = ("audience", "notified", "holdout", "sent", "failed", "retryable", "unknown")


@dataclass(kw_only=True)
class ChunkTally:
    """Counts of one chunk, or summed over a business's run: customers, and log rows by outcome. `failed` counts
    final failures, `retryable` the failures left for a later attempt; `channels` has both per channel with sent
    and unknown; `unavailable` names the channels whose provider stopped answering (circuit breaker open)."""

    audience: int = 0
    notified: int = 0
    holdout: int = 0
    sent: int = 0
    failed: int = 0
    retryable: int = 0
    unknown: int = 0
    skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    # The audience by the journey step due to each customer (its number, as text), the holdout included.
    steps: dict[str, int] = field(default_factory=dict)
    channels: dict[str, dict[str, int]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    # Per channel, retryable failures that ran out of attempts (counted in `failed`): a provider still down.
    exhausted: dict[str, int] = field(default_factory=dict)
    retry_at: dt.datetime | None = None

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped += count
        self.skip_reasons[reason] = self.skip_reasons.get(reason, 0) + count

    def count(self, channel: str, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        per_channel = self.channels.setdefault(channel, {"sent": 0, "failed": 0, "retryable": 0, "unknown": 0})
        per_channel[outcome] += 1

    def retry_from(self, when: dt.datetime) -> None:
        self.retry_at = when if self.retry_at is None else min(self.retry_at, when)

    def counts(self) -> dict[str, int]:
        """The totals, as the run's log line and its run.completed event report them."""
        return {name: getattr(self, name) for name in (*TALLY_TOTALS, "skipped")}

    def add(self, other: "ChunkTally") -> None:
        for name in TALLY_TOTALS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, count in other.skip_reasons.items():
            self.skip(reason, count)
        for step, count in other.steps.items():
            self.steps[step] = self.steps.get(step, 0) + count
        for channel, counts in other.channels.items():
            mine = self.channels.setdefault(channel, dict.fromkeys(counts, 0))
            for outcome, count in counts.items():
                mine[outcome] = mine.get(outcome, 0) + count
        self.unavailable.update(other.unavailable)
        for channel, count in other.exhausted.items():
            self.exhausted[channel] = self.exhausted.get(channel, 0) + count
        if other.retry_at is not None:
            self.retry_from(other.retry_at)


class PlannedLog(NamedTuple):
    """What varies between the NotificationLog rows of a chunk, as a plain tuple (tens of thousands are built per
    second); the rest is the same for every row (`shared_log_values`)."""

    notification_id: str
    customer_id: int
    channel: str
    status: str
    header: str
    body: str
    error: str
    step: int
    variant: str
    html: str


LOG_FIELDS = PlannedLog._fields


@dataclass(frozen=True)
class RunContext:
    config: AutoEngagementConfig
    business: Business
    now: dt.datetime
    run_date: dt.date
    template: dict[str, str]
    # The steps the config follows (autoengagement.journeys); empty: made from the config (its `steps`, or the one
    # step of `template`).
    journey: tuple[Step, ...] = ()
    # No retry is planned after this instant (the day's send time plus the lateness bound).
    retry_deadline: dt.datetime | None = None
    # Called before each send window: the run renews its lease there, so a slow provider draining a chunk never
    # lets it expire (and a run that lost it stops before taking another window).
    keep_alive: Callable[[], None] | None = None
    # The business's webhook subscriptions (webhooks.services.subscriptions), looked up once per run (None: look
    # them up now). Empty for a business without endpoints: then no event is built or written.
    webhooks: Subscriptions | None = None

    def __post_init__(self) -> None:
        if self.webhooks is None:
            object.__setattr__(self, "webhooks", subscriptions(business_pk=self.config.business_id))
        if not self.journey:
            object.__setattr__(self, "journey", config_journey(self.config, template=self.template))
        if self.retry_deadline is None:
            lateness = dt.timedelta(minutes=settings.AUTO_ENGAGEMENT_MAX_LATENESS_MINUTES)
            object.__setattr__(self, "retry_deadline", self.now + lateness)


def shared_log_values(context: RunContext) -> dict[str, Any]:
    """The columns every log row of a run writes alike: sent to the database once per chunk, not once per row."""
    return {
        "business_id": context.config.business_id,
        "config_id": context.config.pk,
        "type": NotificationLog.Type.AUTO_REENGAGEMENT.value,
        "provider_message_id": "",
        "attempts": 0,
        "run_date": context.run_date,
        "created_at": context.now,
    }


# A content's renderers, compiled from its templates: header, body, and the email's own HTML (None without one).
Renderers = tuple[Callable[..., str], Callable[..., str], Callable[..., str] | None]


class ContentPlan(NamedTuple):
    """What a (step, variant) sends, compiled once per chunk: the renderers of each distinct content among the
    config's channels, and per channel (in the config's order) the index of its content's renderers."""

    renderers: list[Renderers]
    channel_content: list[int]


def content_plan(context: RunContext, step: Step, variant_name: str) -> ContentPlan:
    """Each channel's content for a step's variant, its templates compiled once (channels sharing a content, as
    they do without content of their own, share its renderers and so one rendering per customer)."""
    variant = next(variant for variant in step.variants if variant.name == variant_name)
    contents: list[Content] = []
    channel_content = []
    for channel in context.config.channels:
        content = variant.content(channel)
        if content not in contents:
            contents.append(content)
        channel_content.append(contents.index(content))
    renderers = [
        (
            formatter(content.header),
            formatter(content.body),
            formatter(content.html, escape=True) if content.html else None,
        )
        for content in contents
    ]
    return ContentPlan(renderers, channel_content)


def plan_chunk(context: RunContext, members: Sequence[dict[str, Any]]) -> tuple[list[PlannedLog], ChunkTally]:
    """The log rows for a chunk: what would be sent, skipped (and why) or held out. Writes nothing.

    Each member gets the content of their step (`member["step"]`, from the audience) and, when the step has several,
    of their variant (journeys.variant_for), rendered with their attributes as autoengagement.templating.render does;
    each reason is the one of consent.skip_reason (or "no pass" for the wallet). The templates are compiled once per
    chunk and (step, variant), the consent fields looked up once per chunk, rather than per row (tens of thousands
    of rows a second)."""
    config = context.config
    tally = ChunkTally(audience=len(members))
    rows: list[PlannedLog] = []
    append = rows.append
    ids = iter(make_ids(IdKind.NOTIFICATION, len(members) * len(config.channels)))
    pending, skipped, holdout = Status.PENDING.value, Status.SKIPPED.value, Status.HOLDOUT.value
    business_name, now, journey = context.business.name, context.now, context.journey
    # Per channel: (channel, wallet?, opt-out field, address field, sms?), what consent.skip_reason reads.
    channels = [
        (
            channel,
            channel == Channel.WALLET,
            consent.OPT_OUT_FIELDS.get(channel),
            consent.ADDRESS_FIELDS.get(channel),
            channel == Channel.SMS,
        )
        for channel in config.channels
    ]
    plans: dict[tuple[int, str], ContentPlan] = {}
    steps: dict[int, int] = {}
    config_id, holdout_percent = config.config_id, config.holdout_percent
    for member in members:
        pk, step_number = member["pk"], member["step"]
        steps[step_number] = steps.get(step_number, 0) + 1
        if holdout_percent > 0 and in_holdout(
            config_id=config_id,
            customer_id=member["customer_id"],
            spell_start=member["quiet_since"],
            holdout_percent=holdout_percent,
        ):
            tally.holdout += 1
            rows.extend(
                PlannedLog(next(ids), pk, channel, holdout, "", "", "", step_number, "", "")
                for channel in config.channels
            )
            continue
        step = journey[step_number - 1]
        variant = (
            variant_for(step, config_id=config_id, customer_id=member["customer_id"], spell_start=member["quiet_since"])
            if len(step.variants) > 1
            else step.variants[0]
        ).name
        plan = plans.get((step_number, variant))
        if plan is None:
            plan = plans[step_number, variant] = content_plan(context, step, variant)
        days_inactive = (now - member["quiet_since"]).days
        values = {
            "first_name": member["first_name"] or FIRST_NAME_FALLBACK,
            "business_name": business_name,
            "days_inactive": days_inactive if days_inactive > 0 else 0,
        }
        attributes = member["attributes"]
        rendered = [
            (
                header(attributes, **values),
                body(attributes, **values),
                html(attributes, **values) if html is not None else "",
            )
            for header, body, html in plan.renderers
        ]
        for (channel, wallet, opt_out, address, sms), content in zip(channels, plan.channel_content, strict=True):
            if wallet:
                reason = None if member["has_wallet_pass"] else consent.NO_PASS
            elif opt_out is None:
                reason = None
            elif member[opt_out]:
                reason = consent.OPTED_OUT
            elif not member[address]:
                reason = consent.NO_ADDRESS
            elif sms and member["sms_undeliverable_phone"] == member[address]:
                reason = consent.undeliverable_reason(member["sms_undeliverable_reason"])
            else:
                reason = None
            header, body, html = rendered[content]
            if reason:
                tally.skip(reason)
                append(PlannedLog(next(ids), pk, channel, skipped, header, body, reason, step_number, variant, html))
            else:
                append(PlannedLog(next(ids), pk, channel, pending, header, body, "", step_number, variant, html))
    tally.steps = {str(number): count for number, count in sorted(steps.items())}
    return rows, tally


class Outgoing(NamedTuple):
    """A log row about to be sent: its current status and attempts, and what its message carries."""

    pk: int
    channel: str
    customer_pk: int
    status: str
    attempts: int
    recipient: str
    header: str
    body: str
    customer_id: str
    html: str = ""
    # What a webhook event about the row carries (public ids only).
    notification_id: str = ""
    step: int = 1
    variant: str = ""


def deliver_chunk(
    context: RunContext,
    members: Sequence[dict[str, Any]],
    backend_for: Callable[[str], ChannelBackend],
) -> ChunkTally:
    rows, tally = plan_chunk(context, members)
    rows = _skip_active_again(context, members, rows)
    inserted = _write_rows(context, rows)
    members_by_pk = {member["pk"]: member for member in members}
    outgoing: list[Outgoing] = []
    for pk, row in inserted:
        if row.status == Status.PENDING:
            outgoing.append(_outgoing(pk, row, members_by_pk[row.customer_id]))
        elif row.error == ACTIVE_AGAIN:
            tally.skip(ACTIVE_AGAIN)
    tally.notified = len(send_outgoing(context, outgoing, backend_for, tally))
    return tally


def _skip_active_again(
    context: RunContext, members: Sequence[dict[str, Any]], rows: list[PlannedLog]
) -> list[PlannedLog]:
    """Customers who visited since the claim get nothing: checked once for the whole chunk, right before its rows
    are written (and so before anything is sent); their rows are written skipped as "active again"."""
    active_again = set(
        Customer.objects.filter(
            business_id=context.config.business_id,
            pk__range=(members[0]["pk"], members[-1]["pk"]),
            last_activity_at__gt=context.now,
        ).values_list("pk", flat=True)
    )
    if not active_again:
        return rows
    return [
        row._replace(status=Status.SKIPPED, error=ACTIVE_AGAIN)
        if row.status == Status.PENDING and row.customer_id in active_again
        else row
        for row in rows
    ]


def _write_rows(context: RunContext, rows: list[PlannedLog]) -> list[tuple[int, PlannedLog]]:
    """The rows written, with their keys; a row the once-per-day constraint already holds is not among them."""
    if connection.vendor == "postgresql":
        return _insert_rows_postgresql(context, rows)
    by_id = {row.notification_id: row for row in rows}
    return [
        (pk, by_id[notification_id])
        for pk, notification_id in bulk_insert_rows(
            NotificationLog, LOG_FIELDS, rows, same=shared_log_values(context), returning=("pk", "notification_id")
        )
    ]


def _outgoing(pk: int, row: PlannedLog, member: dict[str, Any]) -> Outgoing:
    return Outgoing(
        pk=pk,
        channel=row.channel,
        customer_pk=row.customer_id,
        status=Status.PENDING,
        attempts=0,
        recipient=consent.recipient_for(row.channel, member),
        header=row.header,
        body=row.body,
        customer_id=member["customer_id"],
        html=row.html,
        notification_id=row.notification_id,
        step=row.step,
        variant=row.variant,
    )


# A log row with its key (drawn from the sequence first, PostgreSQL); the columns every row shares follow it.
KEYED_LOG_FIELDS = ("pk", *LOG_FIELDS)


def _insert_rows_postgresql(context: RunContext, rows: Sequence[PlannedLog]) -> list[tuple[int, PlannedLog]]:
    """Write the chunk's rows and return the (pk, row) of those written. The keys are drawn from the table's
    sequence first, so the rows stream in with COPY, which the server inserts as they arrive (a multi-row INSERT
    parses and plans one statement as wide as the chunk); a row that meets the once-per-day constraint (a rerun, a
    run that outlived its lease) makes the COPY fail whole, and the chunk is then inserted skipping such rows."""
    values = shared_log_values(context)
    same = tuple(values.values())
    table = connection.ops.quote_name(NotificationLog._meta.db_table)
    columns = ", ".join(
        connection.ops.quote_name(NotificationLog._meta.get_field("id" if name == "pk" else name).column)
        for name in (*KEYED_LOG_FIELDS, *values)
    )
    keyed: list[tuple[Any, ...]] = []
    try:
        # One transaction, so one commit (a WAL flush) for the keys and the rows.
        with transaction.atomic(), connection.cursor() as cursor, connection.wrap_database_errors:
            # The sequence looked up once (materialized), not once per key.
            cursor.execute(
                "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence(%s, 'id')::regclass AS seq)"
                " SELECT nextval(s.seq) FROM s, generate_series(1, %s)",
                [NotificationLog._meta.db_table, len(rows)],
            )
            keyed = [(pk, *row) for (pk,), row in zip(cursor.fetchall(), rows, strict=True)]
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in keyed:
                    copy.write_row((*row, *same))
        return [(row[0], planned) for row, planned in zip(keyed, rows, strict=True)]
    except IntegrityError:
        if not keyed:
            raise
    written = {
        pk
        for (pk,) in bulk_insert_rows(
            NotificationLog,
            KEYED_LOG_FIELDS,
            keyed,
            same=values,
            returning=("pk",),
        )
    }
    return [(row[0], planned) for row, planned in zip(keyed, rows, strict=True) if row[0] in written]


# The columns a send window writes: the previous window's outcomes and this window's `sending` marks.
OUTCOME_FIELDS = ("status", "error", "provider_message_id", "sent_at", "attempts", "next_attempt_at")


def send_outgoing(
    context: RunContext,
    outgoing: Sequence[Outgoing],
    backend_for: Callable[[str], ChannelBackend],
    tally: ChunkTally,
) -> set[int]:
    """Send rows channel by channel in windows; return the customers (pks) with a row sent."""
    by_channel: dict[str, list[Outgoing]] = defaultdict(list)
    for item in outgoing:
        by_channel[item.channel].append(item)
    window_size = max(1, settings.AUTO_ENGAGEMENT_SEND_WINDOW)
    notified: set[int] = set()
    revoked: dict[str, list[int]] = defaultdict(list)
    recorded: list[tuple[Any, ...]] = []
    # Webhook events about the recorded outcomes (pk -> event), written with them.
    events = Events(context)
    in_flight: list[Outgoing] = []
    try:
        for channel, items in by_channel.items():
            for start in range(0, len(items), window_size):
                window = items[start : start + window_size]
                if context.keep_alive is not None:
                    context.keep_alive()
                backend = backend_for(channel)
                if backend.breaker is not None and not backend.breaker.allow():
                    # Not taken, so written only where the row still holds the status it was read with.
                    results = [not_attempted(message, backend.breaker) for message in _messages(context, window)]
                    recorded.extend(_record(context, window, results, tally, notified, revoked, events, guarded=True))
                    continue
                taken = set(_write(recorded, taking=window, events=events))
                recorded = []
                window = [item for item in window if item.pk in taken]
                messages = _messages(context, window)
                in_flight = window
                results = backend.send_batch(messages) if messages else []
                in_flight = []
                recorded.extend(_record(context, window, results, tally, notified, revoked, events))
                if backend.breaker is not None and backend.breaker.tripped:
                    tally.unavailable[channel] = backend.breaker.reason
    except BaseException as exc:
        # Whether any of the window in the backend's hands went out is unknown: never leave it to be sent again.
        error = f"{UNKNOWN_AFTER_ERROR} ({type(exc).__name__}: {exc})"[:500]
        recorded.extend((item.pk, None, Status.UNKNOWN, error, "", None, item.attempts + 1, None) for item in in_flight)
        tally.unknown += len(in_flight)
        _write(recorded, taking=[], events=events)
        raise
    _write(recorded, taking=[], events=events)
    for channel, customer_pks in revoked.items():
        field_name, value = REVOCATIONS[channel]
        Customer.objects.filter(pk__in=customer_pks).update(**{field_name: value})
        logger.info(
            "consent revoked by provider",
            extra={"business_id": context.business.business_id, "channel": channel, "customers": len(customer_pks)},
        )
    return notified


def _messages(context: RunContext, items: Sequence[Outgoing]) -> list[Message]:
    business_id, business_name, run_date = context.business.business_id, context.business.name, context.run_date
    run_date_text = run_date.isoformat()
    return [
        Message(
            log_id=item.pk,
            recipient=item.recipient,
            header=item.header,
            body=item.body,
            html=item.html,
            notification_id=item.notification_id,
            customer_id=item.customer_id,
            business_id=business_id,
            business_name=business_name,
            extra={"run_date": run_date_text, "attempt": item.attempts + 1},
        )
        for item in items
    ]


class Events:
    """The webhook events of the outcomes recorded since the last write: message.sent for a row sent, and
    message.failed for a final failure, each built only when an endpoint of the business subscribes to it."""

    def __init__(self, context: RunContext) -> None:
        subscribed = context.webhooks or {}
        self.context = context
        self.sent = EventType.MESSAGE_SENT in subscribed
        self.failed = EventType.MESSAGE_FAILED in subscribed
        self.pending: dict[str, dict[int, dict[str, Any]]] = {EventType.MESSAGE_SENT: {}, EventType.MESSAGE_FAILED: {}}

    def add(self, item: Outgoing, status: str, error_code: str = "") -> None:
        event_type = EventType.MESSAGE_SENT if status == Status.SENT else EventType.MESSAGE_FAILED
        data = {
            "business_id": self.context.business.business_id,
            "notification_id": item.notification_id,
            "customer_id": item.customer_id,
            "channel": item.channel,
            "step": item.step,
            "variant": item.variant,
            "status": status,
            "run_date": self.context.run_date.isoformat(),
        }
        if error_code:
            data["error_code"] = error_code
        self.pending[event_type][item.pk] = data

    def write(self, updated: Sequence[int]) -> None:
        """The events of the rows the write updated (a row not taken may have changed meanwhile: no event)."""
        written = set(updated)
        for event_type, by_pk in self.pending.items():
            if by_pk:
                write_events(
                    subscribed=self.context.webhooks or {},
                    business_pk=self.context.business.pk,
                    event_type=event_type,
                    data=[data for pk, data in by_pk.items() if pk in written],
                    timestamp=self.context.now,
                )
                by_pk.clear()

    def __bool__(self) -> bool:
        return any(self.pending.values())


def _write(recorded: Sequence[tuple[Any, ...]], *, taking: Sequence[Outgoing], events: Events) -> list[int]:
    """One statement: the recorded outcomes, and `taking` moved to `sending` where their status is unchanged.
    Returns the primary keys updated (the outcomes' and those of the rows taken). With webhook events to write, one
    transaction holds the outcomes and their events (one INSERT per event type), so neither exists without the
    other; without, no transaction is opened (the statement commits alone, as before)."""
    marks = [(item.pk, item.status, Status.SENDING, "", "", None, item.attempts + 1, None) for item in taking]
    if not events:
        return bulk_update_rows(NotificationLog, OUTCOME_FIELDS, [*recorded, *marks], guard="status")
    with transaction.atomic():
        updated = bulk_update_rows(NotificationLog, OUTCOME_FIELDS, [*recorded, *marks], guard="status")
        events.write(updated)
    return updated


def _record(
    context: RunContext,
    window: Sequence[Outgoing],
    results: Sequence[Result],
    tally: ChunkTally,
    notified: set[int],
    revoked: dict[str, list[int]],
    events: Events,
    *,
    guarded: bool = False,
) -> list[tuple[Any, ...]]:
    """Each message's outcome as a row to write (pk, guard, OUTCOME_FIELDS...), counted in the tally. The guard is
    the status the row was read with when `guarded` (the row was not taken), else none (a taken row is ours)."""
    by_log = {result.log_id: result for result in results}
    rows = []
    for item in window:
        result = by_log.get(item.pk) or Result(log_id=item.pk, status="unknown", error=NO_RESULT)
        attempts = item.attempts + 1 if result.attempted else item.attempts
        next_attempt_at = None
        error = result.error
        if result.status == Status.SENT:
            notified.add(item.customer_pk)
            tally.count(item.channel, "sent")
            if events.sent:
                events.add(item, Status.SENT)
        elif result.status == Status.UNKNOWN:
            tally.count(item.channel, "unknown")
        elif result.status == Status.FAILED and result.retryable:
            next_attempt_at = _next_attempt(context, attempts)
            if next_attempt_at is None:
                error = f"{error}; {RETRIES_EXHAUSTED}"
                tally.count(item.channel, "failed")
                tally.exhausted[item.channel] = tally.exhausted.get(item.channel, 0) + 1
                if events.failed:
                    events.add(item, Status.FAILED, FailureCode.RETRIES_EXHAUSTED)
            else:
                tally.count(item.channel, "retryable")
                tally.retry_from(next_attempt_at)
        elif result.status == Status.FAILED:
            if result.revoked:
                error = f"{CONSENT_REVOKED}: {error}"
            tally.count(item.channel, "failed")
            if events.failed:
                code = FailureCode.CONSENT_REVOKED if result.revoked else FailureCode.PROVIDER_REJECTED
                events.add(item, Status.FAILED, code)
        else:
            tally.skip(error or "skipped by provider")
        if result.revoked and item.channel in REVOCATIONS:
            revoked[item.channel].append(item.customer_pk)
        sent_at = context.now if result.status == Status.SENT else None
        guard = item.status if guarded else None
        rows.append(
            (
                item.pk,
                guard,
                result.status,
                error[:2000],
                result.provider_message_id,
                sent_at,
                attempts,
                next_attempt_at,
            )
        )
    return rows


def _next_attempt(context: RunContext, attempts: int) -> dt.datetime | None:
    """When a retryable failure is tried again: backoff doubling per attempt, from the same run's `now`; None when
    the attempts are spent or the next one would fall after the day's send window closes."""
    if attempts >= settings.AUTO_ENGAGEMENT_MAX_ATTEMPTS:
        return None
    backoff = dt.timedelta(minutes=settings.AUTO_ENGAGEMENT_RETRY_BACKOFF_MINUTES) * 2 ** max(attempts - 1, 0)
    when = context.now + backoff
    return when if when <= context.retry_deadline else None
