"""Delivering the outbox: at least once, signed per Standard Webhooks, retried for more than a day.

`deliver_due` (the `deliver_webhooks` command) repeats, until nothing is due:
1. A short transaction claims a batch of due messages (`select_for_update(skip_locked=True)` on PostgreSQL, and a
   guarded UPDATE everywhere): each gets this batch's owner token and a lease, its `next_attempt_at` moved to the
   lease's end, so a deliverer that dies leaves its claims due again when the lease runs out. Any number of
   copies of the command can run at once; no two send the same attempt.
2. Outside any transaction, every claimed message is sent, many requests in flight through the project's libcurl
   engine (engagement_site.curl), each to addresses resolved and checked just before (webhooks.addresses).
3. One transaction records the outcomes (only where this batch still owns the message) and logs each attempt.

A message is delivered only on a 2xx answer. Anything else (another status, a timeout, a refused connection, an
address refused) schedules the next attempt per SCHEDULE, with up to 10% jitter, or fails the message for good
after the last; a 410 Gone disables the endpoint and fails its pending messages.
"""

import datetime as dt
import json
import logging
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks import Webhook

from engagement_site.curl import USER_AGENT, Answer, CurlPool, HttpRequest, TransferError, run_transfers
from engagement_site.db import bulk_update_rows
from webhooks.addresses import AddressRefused, default_port, literal_address, resolve_allowed
from webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage

logger = logging.getLogger(__name__)

Status = WebhookMessage.Status

# The wait before each attempt after the previous one (the first is immediate): Svix's schedule, 27.6 hours in
# all, so an endpoint that is down for a day still gets every event. After the last, the message fails.
SCHEDULE = (
    dt.timedelta(0),
    dt.timedelta(seconds=5),
    dt.timedelta(minutes=5),
    dt.timedelta(minutes=30),
    dt.timedelta(hours=2),
    dt.timedelta(hours=5),
    dt.timedelta(hours=10),
    dt.timedelta(hours=10),
)
MAX_ATTEMPTS = len(SCHEDULE)
JITTER = 0.1
GONE = 410
ENDPOINT_GONE = "the endpoint answered 410 Gone: disabled, nothing more is sent to it"
ERROR_LENGTH = 500


def next_attempt_after(attempts: int, now: dt.datetime) -> dt.datetime | None:
    """When attempt `attempts + 1` is due, `attempts` having failed; None when none is left. Jitter (0 to 10% of
    the wait) spreads the retries of many messages that failed together (an endpoint back from an outage)."""
    if attempts >= MAX_ATTEMPTS:
        return None
    wait = SCHEDULE[attempts]
    return now + wait + wait * (JITTER * random.random())  # spreading load, not a secret


@dataclass(frozen=True)
class Claimed:
    pk: int
    event_id: str
    attempts: int
    payload: dict[str, Any]
    endpoint_pk: int
    url: str
    secret: str


@dataclass
class Outcome:
    message: Claimed
    attempted_at: dt.datetime
    status_code: int | None = None
    duration_ms: int = 0
    error: str = ""
    # A failure on this side (our TLS or URL configuration): every other request would fail the same way.
    local: bool = False

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass
class DeliverySummary:
    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    # Attempts that failed for a reason on this side (a CA bundle that cannot be read, say), not the endpoint's.
    local_errors: int = 0
    disabled_endpoints: list[str] = field(default_factory=list)
    pruned: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "delivered": self.delivered,
            "retrying": self.retrying,
            "failed": self.failed,
            "local_errors": self.local_errors,
            "disabled_endpoints": self.disabled_endpoints,
            "pruned": self.pruned,
        }


CLAIM_FIELDS = ("pk", "event_id", "attempts", "payload", "endpoint_id", "endpoint__url", "endpoint__secret")


def claim_due(*, now: dt.datetime, owner: str, limit: int) -> list[Claimed]:
    """Take up to `limit` due messages for this batch (`owner`): a short transaction, a lease of
    WEBHOOK_LEASE_SECONDS. Rows another deliverer holds locked are skipped (PostgreSQL), and the UPDATE takes only
    rows still due, so two deliverers never claim one message."""
    lease_end = now + dt.timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)
    with transaction.atomic():
        due = WebhookMessage.objects.filter(status=Status.PENDING, next_attempt_at__lte=now).order_by(
            "next_attempt_at", "pk"
        )
        if connection.vendor == "postgresql":
            due = due.select_for_update(skip_locked=True)
        pks = list(due.values_list("pk", flat=True)[:limit])
        if not pks:
            return []
        WebhookMessage.objects.filter(pk__in=pks, status=Status.PENDING, next_attempt_at__lte=now).update(
            lease_owner=owner, lease_expires_at=lease_end, next_attempt_at=lease_end
        )
        rows = WebhookMessage.objects.filter(pk__in=pks, lease_owner=owner).order_by("pk").values_list(*CLAIM_FIELDS)
        return [Claimed(*row) for row in rows]


def signed_request(message: Claimed, *, resolve: tuple[str, ...] = ()) -> HttpRequest:
    """The POST a receiver verifies with `standardwebhooks.Webhook(secret).verify(body, headers)`: the signature
    covers "<webhook-id>.<webhook-timestamp>.<body>", the timestamp being this attempt's."""
    body = json.dumps(message.payload, separators=(",", ":"), ensure_ascii=False)
    sent_at = dt.datetime.fromtimestamp(int(time.time()), tz=dt.UTC)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message.event_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(message.secret).sign(message.event_id, sent_at, body),
    }
    return HttpRequest("POST", message.url, headers, body.encode(), resolve=resolve)


class Resolver:
    """Each endpoint host resolved and checked once per batch (webhooks.addresses), as libcurl RESOLVE entries that
    pin the connection to the addresses checked; with WEBHOOK_ALLOW_PRIVATE_URLS, nothing is checked or pinned."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, int], tuple[str, ...] | AddressRefused] = {}

    def __call__(self, url: str) -> tuple[str, ...]:
        if settings.WEBHOOK_ALLOW_PRIVATE_URLS:
            return ()
        parts = urlsplit(url)
        key = (parts.hostname or "", default_port(parts))
        if key not in self._found:
            try:
                addresses = resolve_allowed(*key)
                # A literal address needs no pinning; a name is pinned to what was checked (IPv6 in brackets).
                pinned = ",".join(f"[{a}]" if ":" in a else a for a in addresses)
                self._found[key] = () if literal_address(key[0]) else (f"{key[0]}:{key[1]}:{pinned}",)
            except AddressRefused as exc:
                self._found[key] = exc
        found = self._found[key]
        if isinstance(found, AddressRefused):
            raise found
        return found


def send_claimed(claimed: Sequence[Claimed], *, pool: CurlPool, concurrency: int) -> list[Outcome]:
    """One attempt per claimed message, up to `concurrency` in flight; an outcome for each."""
    resolver = Resolver()
    outcomes: list[Outcome] = []
    started: dict[int, float] = {}

    def start(message: Claimed) -> HttpRequest | None:
        try:
            request = signed_request(message, resolve=resolver(message.url))
        except AddressRefused as exc:
            outcomes.append(Outcome(message, timezone.now(), error=f"address refused: {exc}"[:ERROR_LENGTH]))
            return None
        started[message.pk] = time.perf_counter()
        return request

    def settle(message: Claimed, answer: Answer | TransferError) -> None:
        duration_ms = round((time.perf_counter() - started.pop(message.pk)) * 1000)
        outcome = Outcome(message, timezone.now(), duration_ms=duration_ms)
        if isinstance(answer, TransferError):
            outcome.error = f"{answer.kind}: {answer}"[:ERROR_LENGTH]
            outcome.local = answer.configuration
        else:
            outcome.status_code = answer.status_code
            if not outcome.delivered:
                outcome.error = f"HTTP {answer.status_code} {answer.reason_phrase}".strip()[:ERROR_LENGTH]
        outcomes.append(outcome)

    run_transfers(pool, claimed, start=start, settle=settle, concurrency=concurrency)
    return outcomes


OUTCOME_FIELDS = (
    "status",
    "attempts",
    "next_attempt_at",
    "lease_expires_at",
    "lease_owner",
    "last_status_code",
    "last_error",
    "delivered_at",
)


def record_outcomes(outcomes: Sequence[Outcome], *, owner: str, summary: DeliverySummary) -> None:
    """One transaction: each message's new state, written only where this batch still owns it (a lease that ran out
    and was claimed again belongs to the later batch), and every attempt logged."""
    rows, attempts, gone = [], [], {}
    for outcome in outcomes:
        message, number = outcome.message, outcome.message.attempts + 1
        next_at = None
        if outcome.delivered:
            status = Status.DELIVERED
            summary.delivered += 1
        elif outcome.status_code == GONE:
            status = Status.FAILED
            gone[message.pk] = message.endpoint_pk
            summary.failed += 1
        else:
            next_at = next_attempt_after(number, outcome.attempted_at)
            status = Status.PENDING if next_at else Status.FAILED
            if next_at:
                summary.retrying += 1
            else:
                summary.failed += 1
        summary.local_errors += outcome.local
        delivered_at = outcome.attempted_at if outcome.delivered else None
        rows.append(
            (message.pk, owner, status, number, next_at, None, "", outcome.status_code, outcome.error, delivered_at)
        )
        attempts.append(
            WebhookAttempt(
                message_id=message.pk,
                number=number,
                attempted_at=outcome.attempted_at,
                status_code=outcome.status_code,
                duration_ms=outcome.duration_ms,
                error=outcome.error,
                next_attempt_at=next_at,
            )
        )
    with transaction.atomic():
        # Only the messages still ours: another batch owns the rest (a lease that ran out), and a message whose
        # endpoint was deleted meanwhile is gone, attempts and all.
        updated = set(bulk_update_rows(WebhookMessage, OUTCOME_FIELDS, rows, guard="lease_owner"))
        WebhookAttempt.objects.bulk_create(
            [attempt for attempt in attempts if attempt.message_id in updated], ignore_conflicts=True
        )
        gone_endpoints = {endpoint for pk, endpoint in gone.items() if pk in updated}
        if gone_endpoints:
            summary.disabled_endpoints += disable_endpoints(gone_endpoints)


def disable_endpoints(endpoint_pks: set[int]) -> list[str]:
    """Endpoints that answered 410 Gone: disabled, their pending messages failed (and taken from any batch that
    holds them, whose later write then finds them no longer its own)."""
    now = timezone.now()
    WebhookEndpoint.objects.filter(pk__in=endpoint_pks, disabled_at__isnull=True).update(disabled_at=now)
    WebhookMessage.objects.filter(endpoint_id__in=endpoint_pks, status=Status.PENDING).update(
        status=Status.FAILED, next_attempt_at=None, lease_owner="", lease_expires_at=None, last_error=ENDPOINT_GONE
    )
    webhook_ids = list(WebhookEndpoint.objects.filter(pk__in=endpoint_pks).values_list("webhook_id", flat=True))
    logger.warning("webhook endpoints disabled (410 Gone)", extra={"webhook_ids": webhook_ids})
    return webhook_ids


def prune_finished(*, now: dt.datetime, limit: int = 10_000) -> int:
    """Delete up to `limit` delivered or failed messages (and their attempts) older than WEBHOOK_RETENTION_DAYS."""
    cutoff = now - dt.timedelta(days=settings.WEBHOOK_RETENTION_DAYS)
    pks = list(
        WebhookMessage.objects.filter(status__in=(Status.DELIVERED, Status.FAILED), created_at__lt=cutoff).values_list(
            "pk", flat=True
        )[:limit]
    )
    if not pks:
        return 0
    with transaction.atomic():
        WebhookAttempt.objects.filter(message_id__in=pks).delete()
        deleted, _ = WebhookMessage.objects.filter(pk__in=pks).delete()
    return deleted


def deliver_due(*, batch_size: int, concurrency: int, prune: bool = True) -> DeliverySummary:
    """Deliver every message due, batch after batch, until none is due; then prune old finished messages."""
    summary = DeliverySummary()
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    pool = CurlPool(http2=False, max_connections=concurrency, timeout=timeout, connect_timeout=min(timeout, 5.0))
    try:
        while True:
            owner = uuid.uuid4().hex
            claimed = claim_due(now=timezone.now(), owner=owner, limit=batch_size)
            if not claimed:
                break
            summary.claimed += len(claimed)
            outcomes = send_claimed(claimed, pool=pool, concurrency=concurrency)
            record_outcomes(outcomes, owner=owner, summary=summary)
            logger.info("webhook batch delivered", extra={"claimed": len(claimed), **summary.as_dict()})
    finally:
        pool.close()
    if prune:
        summary.pruned = prune_finished(now=timezone.now())
    return summary
