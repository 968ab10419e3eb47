"""The live wallet channel (WALLET_CHANNEL=live): a re-engagement message on each of a customer's wallet passes.

Apple: the pass's `message` field takes the new text (its changeMessage puts it on the lock screen) and its
modification time moves, then every registered device gets an empty APNs push and fetches the updated pass from
the PassKit web service. Google: addMessage on the loyalty object, notifying while the pass is under Google's
daily cap. A customer with passes on both platforms is reached on both; the message's result is sent when any
pass was reached.

A batch costs a constant number of queries whatever its size: the customers' passes and their registrations are
read in one query (plain rows, no model instances), Apple passes are updated in one set-based UPDATE
(engagement_site.db.bulk_update_rows), dead registrations removed in one delete, Google's daily counts
read in one query and written in one insert. Pushes share one HTTP/2 connection. Google calls go out concurrently
(up to GOOGLE_WALLET_CONCURRENCY in flight, multiplexed over one HTTP/2 connection by libcurl) at most
GOOGLE_WALLET_RATE_LIMIT a second, a budget shared by every process (notifications.backends.http.shared_rate_limiter);
each pass is a lane of the Google client's batch (its messages one after the other), with no database access until
every call has returned.
"""

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Generator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from engagement_site.db import bulk_update_rows
from notifications.backends.base import ChannelBackend, Message, Result
from notifications.backends.http import shared_rate_limiter
from notifications.backends.quota import SharedRateLimiter
from notifications.channels import Channel
from notifications.consent import NO_PASS
from wallet import passes
from wallet.apns import ApnsClient, ApnsTls, PushOutcome
from wallet.google_wallet import (
    OUR_MESSAGE_PREFIX,
    AddMessage,
    AddMessageOutcome,
    GoogleConfig,
    GoogleWalletClient,
    Lane,
    load_google_config,
    loyalty_object_id,
)
from wallet.models import AppleDeviceRegistration, GoogleWalletMessage, WalletPass

logger = logging.getLogger(__name__)

GOOGLE_NOTIFY_WINDOW = dt.timedelta(hours=24)
GOOGLE_PROVIDER = "Google Wallet"  # the name of its shared rate-limit budget
NO_REGISTERED_DEVICE = "no registered device"


@dataclass(frozen=True)
class _Attempt:
    """What happened to one pass of one message."""

    status: str  # sent | failed | unknown | skipped
    detail: str = ""
    provider_id: str = ""
    retryable: bool = False
    unregistered: bool = False  # APNs 410 or a dead token: its registration is deleted
    attempted: bool = True  # False: the run's circuit breaker kept the call from being made


def combine_attempts(*, log_id: int, attempts: Sequence[_Attempt]) -> Result:
    """One result per message: sent if any pass was reached, else unknown if any pass may have been, else failed
    if any attempt failed, else skipped."""
    sent = [a for a in attempts if a.status == "sent"]
    if sent:
        provider_id = ",".join(a.provider_id for a in sent if a.provider_id)[:255]
        return Result(log_id=log_id, status="sent", provider_message_id=provider_id)
    unknown = [a for a in attempts if a.status == "unknown"]
    if unknown:
        return Result(log_id=log_id, status="unknown", error="; ".join(dict.fromkeys(a.detail for a in unknown)))
    failed = [a for a in attempts if a.status == "failed"]
    if failed:
        error = "; ".join(dict.fromkeys(a.detail for a in failed))
        # Every device said the pass is gone: the customer's answer, not a fault (nothing to retry).
        revoked = all(a.unregistered for a in failed)
        return Result(
            log_id=log_id,
            status="failed",
            error=error,
            retryable=any(a.retryable for a in failed) and not revoked,
            revoked=revoked,
            attempted=any(a.attempted for a in failed),
        )
    reasons = "; ".join(dict.fromkeys(a.detail for a in attempts)) or NO_PASS
    return Result(log_id=log_id, status="skipped", error=reasons)


class WalletBackend(ChannelBackend):
    """Apple (pass update + APNs) and Google (addMessage) behind the channel-backend interface."""

    channel = Channel.WALLET

    def __init__(self, *, channel: str = "") -> None:
        super().__init__(channel=channel)
        self.apple: passes.AppleConfig | None = None
        self.google: GoogleConfig | None = None
        self.apns: ApnsClient | None = None
        self.google_client: GoogleWalletClient | None = None
        # What open() opened, closed in reverse order by close(); None while closed.
        self._opened: ExitStack | None = None

    @property
    def is_open(self) -> bool:
        return self._opened is not None

    def open(self) -> None:
        """Load certificates and credentials, open the APNs connection pool and the Google session. When a step
        fails, what the steps before it opened is closed again (in reverse order) before the error is raised."""
        if self.is_open:
            return
        if not settings.APPLE_PASS_TYPE_ID and not settings.GOOGLE_WALLET_ISSUER_ID:
            raise ImproperlyConfigured(
                "WALLET_CHANNEL=live needs the Apple (APPLE_PASS_TYPE_ID, ...) or Google (GOOGLE_WALLET_ISSUER_ID, ...)"
                " settings."
            )
        with ExitStack() as opened:
            if settings.APPLE_PASS_TYPE_ID:
                self._open_apple(opened)
            if settings.GOOGLE_WALLET_ISSUER_ID:
                self._open_google(opened)
            self._opened = opened.pop_all()

    def _open_apple(self, opened: ExitStack) -> None:
        self.apple = passes.load_apple_config()
        self.apns = ApnsClient(
            host=settings.APNS_HOST,
            topic=self.apple.pass_type_id,
            tls=ApnsTls(
                cert_file=self.apple.cert_file,
                key_file=self.apple.key_file,
                key_password=self.apple.key_password,
                ca_file=settings.APNS_CA_FILE,
            ),
            timeout=settings.APNS_TIMEOUT,
            concurrency=settings.APNS_CONCURRENCY,
            max_retries=settings.WALLET_MAX_RETRIES,
            backoff=settings.WALLET_RETRY_BACKOFF,
        )
        self.apns.breaker = self.breaker
        self.apns.open()
        opened.callback(self.apns.close)

    def _open_google(self, opened: ExitStack) -> None:
        self.google = load_google_config()
        limiter = shared_rate_limiter(provider=GOOGLE_PROVIDER, rate=float(settings.GOOGLE_WALLET_RATE_LIMIT))
        if isinstance(limiter, SharedRateLimiter):
            # The shared budget's own database connection is not kept open between runs (it reopens when needed).
            opened.callback(limiter.close)
        self.google_client = GoogleWalletClient(
            config=self.google,
            max_retries=settings.WALLET_MAX_RETRIES,
            backoff=settings.WALLET_RETRY_BACKOFF,
            breaker=self.breaker,
            limiter=limiter,
            concurrency=settings.GOOGLE_WALLET_CONCURRENCY,
        )
        self.google_client.open()
        opened.callback(self.google_client.close)

    def close(self) -> None:
        """Close what open() opened, last first; each one even when closing another failed."""
        opened, self._opened = self._opened, None
        if opened is not None:
            opened.close()

    def _send(self, messages: Sequence[Message]) -> list[Result]:
        now = timezone.now()
        found = _read_passes(recipients={m.recipient for m in messages})
        attempts: dict[int, list[_Attempt]] = defaultdict(list)
        apple_work: list[tuple[Message, _PassRow]] = []
        google_work: list[tuple[Message, WalletPass]] = []
        google_passes: dict[int, WalletPass] = {}
        for message in messages:
            wallet_passes = found.get(message.recipient, ())
            if not wallet_passes:
                attempts[message.log_id].append(_Attempt("skipped", NO_PASS))
            for wallet_pass in wallet_passes:
                if wallet_pass.platform == WalletPass.Platform.APPLE:
                    if self.apple is None:
                        attempts[message.log_id].append(_Attempt("failed", "Apple Wallet is not configured"))
                    elif not wallet_pass.registrations:
                        attempts[message.log_id].append(_Attempt("skipped", NO_REGISTERED_DEVICE))
                    else:
                        apple_work.append((message, wallet_pass))
                elif self.google is None:
                    attempts[message.log_id].append(_Attempt("failed", "Google Wallet is not configured"))
                else:
                    # The Google path works on model instances (one per pass, shared by its messages).
                    if wallet_pass.pk not in google_passes:
                        google_passes[wallet_pass.pk] = wallet_pass.model_instance()
                    google_work.append((message, google_passes[wallet_pass.pk]))
        if apple_work:
            self._send_apple(work=apple_work, attempts=attempts, now=now)
        if google_work:
            self._send_google(work=google_work, attempts=attempts, now=now)
        results = [combine_attempts(log_id=m.log_id, attempts=attempts[m.log_id]) for m in messages]
        logger.info(
            "wallet batch sent",
            extra={
                "channel": self.channel,
                "messages": len(messages),
                "sent": sum(r.status == "sent" for r in results),
                "failed": sum(r.status == "failed" for r in results),
                "skipped": sum(r.status == "skipped" for r in results),
            },
        )
        return results

    def _send_apple(
        self, *, work: list[tuple[Message, "_PassRow"]], attempts: dict[int, list[_Attempt]], now: dt.datetime
    ) -> None:
        """Update the passes' message field in one set-based UPDATE, then push to every registered device."""
        updated: dict[int, _PassRow] = {}
        for message, wallet_pass in work:
            # A pass reached by two messages of the batch takes them in turn, the second seeing the first's text.
            wallet_pass.message_text = passes.message_value(
                header=message.header,
                body=message.body,
                current=wallet_pass.message_text,
                run_date=str(message.extra.get("run_date", "")),
                retry=message.extra.get("attempt", 1) > 1,
            )
            # Last-Modified has whole seconds: the new modification time must fall in a later second than the one a
            # device already holds, or its If-Modified-Since fetch would get 304 and miss the message.
            wallet_pass.updated_at = passes.next_modified(current=wallet_pass.updated_at, now=now)
            updated[wallet_pass.pk] = wallet_pass
        with transaction.atomic(savepoint=False):  # all or nothing, whatever the number of statements
            bulk_update_rows(
                WalletPass,
                ["message_text", "updated_at"],
                [(pk, wallet_pass.message_text, wallet_pass.updated_at) for pk, wallet_pass in updated.items()],
            )
        registrations = [reg for wallet_pass in updated.values() for reg in wallet_pass.registrations]
        outcomes = self.apns.push_many(tokens=[token for _, token in registrations])
        gone = [pk for pk, token in registrations if outcomes[token].unregistered]
        if gone:
            AppleDeviceRegistration.objects.filter(pk__in=gone).delete()
            logger.info("apple registrations removed (410 or a dead token)", extra={"count": len(gone)})
        # One attempt per distinct outcome (they are immutable), shared by the messages that reach the device.
        device_attempts = {token: _apple_attempt(outcome) for token, outcome in outcomes.items()}
        for message, wallet_pass in work:
            attempts[message.log_id].extend(device_attempts[token] for _, token in wallet_pass.registrations)

    def _send_google(
        self, *, work: list[tuple[Message, WalletPass]], attempts: dict[int, list[_Attempt]], now: dt.datetime
    ) -> None:
        """addMessage on each loyalty object, notifying only while the pass is under the daily cap.

        Every pass is a lane of the Google client's batch and the lanes run at once (the client bounds the calls in
        flight and their rate). A pass's own items, should a batch ever hold two for it, run one after the other in
        its lane, so its count of notifications stays right. The database is read before and written after.
        """
        notified = dict(
            GoogleWalletMessage.objects.filter(
                wallet_pass__in=[wallet_pass for _, wallet_pass in work],
                notified=True,
                sent_at__gt=now - GOOGLE_NOTIFY_WINDOW,
            )
            .values("wallet_pass")
            .annotate(count=Count("id"))
            .values_list("wallet_pass", "count")
        )
        by_pass: dict[int, list[int]] = defaultdict(list)
        for index, (_, wallet_pass) in enumerate(work):
            by_pass[wallet_pass.pk].append(index)
        done: dict[int, tuple[_Attempt, bool | None]] = {}

        def one_pass(indexes: list[int]) -> Lane:
            for index in indexes:
                message, wallet_pass = work[index]
                done[index] = yield from self._google_item(message=message, wallet_pass=wallet_pass, notified=notified)

        failure = "no outcome"
        try:
            self.google_client.run([one_pass(indexes) for indexes in by_pass.values()])
        except Exception as exc:
            logger.exception("google wallet batch failed unexpectedly")
            failure = type(exc).__name__
        # An item the batch did not finish (it stopped on an error) may have been sent: unknown, never sent again.
        unfinished = _Attempt("unknown", f"Google Wallet: unexpected error ({failure}); it may be on the pass"), None
        added: list[GoogleWalletMessage] = []
        for index, (message, wallet_pass) in enumerate(work):
            attempt, notify = done.get(index, unfinished)
            attempts[message.log_id].append(attempt)
            if notify is not None:
                added.append(
                    GoogleWalletMessage(
                        wallet_pass=wallet_pass, message_id=_google_message_id(message), notified=notify, sent_at=now
                    )
                )
        GoogleWalletMessage.objects.bulk_create(added, batch_size=500)

    def _google_item(
        self, *, message: Message, wallet_pass: WalletPass, notified: dict[int, int]
    ) -> Generator[AddMessage, AddMessageOutcome, tuple[_Attempt, bool | None]]:
        """One message on one pass: added notifying while the pass is under the cap, added again as TEXT when Google
        says it is at its cap. Yields each call and receives its outcome; returns the attempt and, when the message
        was added, whether it notified."""
        try:
            notify = notified.get(wallet_pass.pk, 0) < self.google.notify_limit
            if not notify and self.google.over_limit == "skip":
                return _Attempt("skipped", "Google notification limit reached"), None
            outcome = yield self._google_call(message=message, wallet_pass=wallet_pass, notify=notify)
            if outcome.quota_exceeded:
                # Notified elsewhere than through us: the pass is at Google's cap for now.
                notified[wallet_pass.pk] = self.google.notify_limit
                notify = False
                if self.google.over_limit != "text":
                    return _Attempt("skipped", outcome.error), None
                outcome = yield self._google_call(message=message, wallet_pass=wallet_pass, notify=False)
        except Exception as exc:
            # Whatever went wrong, a call may have been made: never sent again (and the other items go on).
            logger.exception("google wallet message failed unexpectedly", extra={"log_id": message.log_id})
            return _Attempt(
                "unknown", f"Google Wallet: unexpected error ({type(exc).__name__}); it may be on the pass"
            ), None
        if outcome.ok:
            notified[wallet_pass.pk] = notified.get(wallet_pass.pk, 0) + int(notify)
            return _Attempt("sent", provider_id=f"google:{outcome.message_id}"), notify
        if outcome.unknown:
            return _Attempt("unknown", outcome.error), None
        return _Attempt("failed", outcome.error, retryable=outcome.retryable, attempted=outcome.attempted), None

    def _google_call(self, *, message: Message, wallet_pass: WalletPass, notify: bool) -> AddMessage:
        return AddMessage(
            object_id=loyalty_object_id(issuer_id=self.google.issuer_id, pass_id=wallet_pass.pass_id),
            message_id=_google_message_id(message),
            header=message.header,
            body=message.body,
            notify=notify,
        )


class _PassRow:
    """A pass as the batch reads it: its columns, and for an Apple pass its registrations (pk, push token)."""

    __slots__ = ("customer_id", "message_text", "pass_id", "pk", "platform", "registrations", "updated_at")

    def __init__(
        self, *, pk: int, pass_id: str, customer_id: int, platform: str, message_text: str, updated_at: dt.datetime
    ) -> None:
        self.pk = pk
        self.pass_id = pass_id
        self.customer_id = customer_id
        self.platform = platform
        self.message_text = message_text
        self.updated_at = updated_at
        self.registrations: list[tuple[int, str]] = []

    def model_instance(self) -> WalletPass:
        """The pass as a model instance with the columns read (any other is loaded on access, as if deferred)."""
        return WalletPass.from_db(
            WalletPass.objects.db,
            _PASS_FIELDS,
            (self.pk, self.pass_id, self.customer_id, self.platform, self.message_text, self.updated_at),
        )


_PASS_FIELDS = ["id", "pass_id", "customer_id", "platform", "message_text", "updated_at"]


def _read_passes(*, recipients: set[str]) -> dict[str, list[_PassRow]]:
    """Each recipient's passes (in primary-key order) with their device registrations (in primary-key order), read
    in one query as plain rows: no model instances, no prefetch."""
    rows = (
        WalletPass.objects.filter(customer__customer_id__in=recipients)
        .order_by("pk", "device_registrations__pk")
        .values_list(
            "customer__customer_id",
            *_PASS_FIELDS,
            "device_registrations__pk",
            "device_registrations__push_token",
        )
    )
    found: dict[str, list[_PassRow]] = defaultdict(list)
    current: _PassRow | None = None
    for recipient, pk, pass_id, customer_id, platform, message_text, updated_at, reg_pk, push_token in rows:
        if current is None or current.pk != pk:
            current = _PassRow(
                pk=pk,
                pass_id=pass_id,
                customer_id=customer_id,
                platform=platform,
                message_text=message_text,
                updated_at=updated_at,
            )
            found[recipient].append(current)
        if reg_pk is not None:
            current.registrations.append((reg_pk, push_token))
    return found


def _google_message_id(message: Message) -> str:
    return f"{OUR_MESSAGE_PREFIX}{message.log_id}"


def _apple_attempt(outcome: PushOutcome) -> _Attempt:
    if outcome.ok:
        return _Attempt("sent", provider_id=f"apns:{outcome.apns_id}" if outcome.apns_id else "apns")
    return _Attempt(
        "failed",
        outcome.error,
        retryable=outcome.retryable,
        unregistered=outcome.unregistered,
        attempted=outcome.attempted,
    )
