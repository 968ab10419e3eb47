"""Google Wallet: messages on a customer's loyalty object (addMessage) and the "save to wallet" link.

Calls go through one libcurl pool (engagement_site.curl.CurlPool) opened by open() and kept until close(): over
HTTPS the batch's calls are HTTP/2 streams multiplexed over one connection (one more per 100 in flight); to a
plain-HTTP stand-in, a pool of HTTP/1.1 connections. They are authenticated with an OAuth2 token of the service
account in GOOGLE_WALLET_CREDENTIALS, exchanged at the token_uri in that file (engagement_site.transport
.GoogleAuthRequest, libcurl too), reused until it expires and refreshed once more when Google answers 401. A batch
runs on the calling thread (engagement_site.curl.run_transfers): at most `concurrency` (GOOGLE_WALLET_CONCURRENCY)
calls in flight, each after a slot of the rate limiter the caller passes in (GOOGLE_WALLET_RATE_LIMIT, one budget for
every process).

A batch is a list of lanes, one per loyalty object: a generator that yields that object's addMessage calls one at a
time and receives each one's outcome. So the calls for one object go out in order, never at once, and the next one
may depend on the last one's answer (notifications.backends.wallet adds a message again as TEXT after quotaExceeded).

Google lets a pass show at most 3 notifying messages per 24 hours: the caller counts them (see
notifications.backends.wallet) so a call that would fail with QuotaExceededException is rarely made; when it is,
Google answers HTTP 403 (or 429) with the reason "quotaExceeded" and the caller adds the message as TEXT.

addMessage is not idempotent (message ids do not dedupe): a 429 or a failure to connect (libcurl: no byte of the
request was written) is retried, but a timeout or a reset after the request was written, or a 5xx, leaves the
outcome unknown and is never retried. Each message of ours shows for GOOGLE_WALLET_MESSAGE_DAYS (its
displayInterval), and after an addMessage the object keeps at most GOOGLE_WALLET_KEEP_MESSAGES of ours: older ones
are removed (a PATCH of the object's messages, the only removal the API offers), so a loyalty object never reaches
Google's cap of 10 messages because of us.
"""

import datetime as dt
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from google.auth import exceptions as google_auth_exceptions
from google.auth import jwt
from google.oauth2 import service_account

from engagement_site.curl import (
    AT_ONCE,
    Answer,
    CurlPool,
    HttpRequest,
    RateLimit,
    RateSlots,
    TransferError,
    http2_connections,
    run_transfers,
)
from engagement_site.transport import GoogleAuthRequest
from wallet.models import WalletPass
from wallet.retry import retry_delay

logger = logging.getLogger(__name__)

SCOPE = "https://www.googleapis.com/auth/wallet_object.issuer"
SAVE_URL_BASE = "https://pay.google.com/gp/v/save/"
OUR_MESSAGE_PREFIX = "reengagement-"


@dataclass(frozen=True)
class GoogleConfig:
    issuer_id: str
    credentials: service_account.Credentials
    api_base: str
    class_id: str
    timeout: float
    notify_limit: int
    over_limit: Literal["text", "skip"]
    message_days: int = 14
    keep_messages: int = 3


@dataclass(frozen=True)
class AddMessageOutcome:
    ok: bool
    message_id: str
    error: str = ""
    retryable: bool = False
    # Google refused a notifying message: the pass already had its notifications for the day.
    quota_exceeded: bool = False
    # The request was written and no answer says it was not processed: the message may be on the pass.
    unknown: bool = False
    # False when the run's circuit breaker kept the call from being made at all.
    attempted: bool = True


def load_google_config() -> GoogleConfig:
    """Read the Google settings and the service-account file; raise ImproperlyConfigured when unusable."""
    if missing := [
        name for name in ("GOOGLE_WALLET_ISSUER_ID", "GOOGLE_WALLET_CREDENTIALS") if not getattr(settings, name)
    ]:
        raise ImproperlyConfigured(f"Google Wallet needs {', '.join(missing)}.")
    if settings.GOOGLE_WALLET_OVER_LIMIT not in {"text", "skip"}:
        raise ImproperlyConfigured("GOOGLE_WALLET_OVER_LIMIT must be 'text' or 'skip'.")
    try:
        credentials = service_account.Credentials.from_service_account_file(
            settings.GOOGLE_WALLET_CREDENTIALS, scopes=[SCOPE]
        )
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(f"GOOGLE_WALLET_CREDENTIALS could not be loaded: {exc}") from exc
    issuer_id = settings.GOOGLE_WALLET_ISSUER_ID
    class_id = settings.GOOGLE_WALLET_CLASS_ID
    if class_id and "." not in class_id:
        class_id = f"{issuer_id}.{class_id}"
    return GoogleConfig(
        issuer_id=issuer_id,
        credentials=credentials,
        api_base=settings.GOOGLE_WALLET_API_BASE.rstrip("/"),
        class_id=class_id,
        timeout=settings.GOOGLE_WALLET_TIMEOUT,
        notify_limit=settings.GOOGLE_WALLET_NOTIFY_LIMIT,
        over_limit=settings.GOOGLE_WALLET_OVER_LIMIT,
        message_days=settings.GOOGLE_WALLET_MESSAGE_DAYS,
        keep_messages=settings.GOOGLE_WALLET_KEEP_MESSAGES,
    )


def loyalty_object_id(*, issuer_id: str, pass_id: str) -> str:
    return f"{issuer_id}.{pass_id}"


@dataclass(frozen=True)
class AddMessage:
    """One addMessage call on a loyalty object, shown for `message_days` from `now` (default: when it is first
    made)."""

    object_id: str
    message_id: str
    header: str
    body: str
    notify: bool
    now: dt.datetime | None = None


# One loyalty object's calls, in order: yields each call, receives its outcome.
Lane = Generator[AddMessage, AddMessageOutcome, Any]


class GoogleWalletClient:
    """One libcurl pool and OAuth2 token for the invocation's addMessage calls.

    `run(lanes)` sends a batch: up to `concurrency` calls in flight, each after a slot of `limiter` (None: no
    limit), the calls of one lane one after the other. `add_messages` and `add_message` are the same for calls
    that need no follow-up.
    """

    def __init__(
        self,
        *,
        config: GoogleConfig,
        max_retries: int,
        backoff: float,
        breaker: Any = None,
        limiter: RateLimit | None = None,
        concurrency: int = 100,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.max_retries = max_retries
        self.backoff = backoff
        self.breaker = breaker
        self.limiter = limiter
        self.concurrency = max(1, concurrency)
        self._clock = clock
        self._sleep = sleep
        self.pool: CurlPool | None = None
        self._token_request = GoogleAuthRequest(timeout=config.timeout)
        # The last token refresh that failed: when it ended, and its error (see _access_token).
        self._token_failure: tuple[float, google_auth_exceptions.GoogleAuthError] | None = None

    def open(self) -> None:
        if self.pool is not None:
            return
        # HTTP/2 over HTTPS: the calls in flight share one connection (STREAMS_PER_CONNECTION streams each);
        # HTTP/1.1 (a local stand-in): connections opened as the calls in flight need them. libcurl may never send
        # a call again by itself (resend_unanswered stays off): addMessage is not idempotent.
        multiplexed = self.config.api_base.startswith("https://")
        self.pool = CurlPool(
            http2=multiplexed,
            max_connections=http2_connections(self.concurrency) if multiplexed else self.concurrency,
            timeout=self.config.timeout,
        )

    def close(self) -> None:
        if self.pool is None:
            return
        pool, self.pool = self.pool, None
        pool.close()

    def run(self, lanes: Sequence[Lane]) -> None:
        """Send every lane's calls; each lane gets the outcome of each of its calls before yielding the next."""
        if self.pool is None:
            raise RuntimeError("GoogleWalletClient.open() was not called")
        _Batch(self, lanes).run()

    def add_messages(self, calls: Sequence[AddMessage]) -> list[AddMessageOutcome]:
        """The outcome of each call, in input order; calls on one object go one after the other."""
        outcomes: list[AddMessageOutcome | None] = [None] * len(calls)
        by_object: dict[str, list[int]] = defaultdict(list)
        for index, call in enumerate(calls):
            by_object[call.object_id].append(index)

        def lane(indexes: list[int]) -> Lane:
            for index in indexes:
                outcomes[index] = yield calls[index]

        self.run([lane(indexes) for indexes in by_object.values()])
        return outcomes

    def add_message(
        self, *, object_id: str, message_id: str, header: str, body: str, notify: bool, now: dt.datetime | None = None
    ) -> AddMessageOutcome:
        """addMessage on a loyalty object; only what provably did not reach Google (429, no connection) is retried,
        404 and other 4xx are final, a 5xx or a lost answer is unknown."""
        call = AddMessage(object_id, message_id, header, body, notify, now)
        [outcome] = self.add_messages([call])
        return outcome

    def object_url(self, object_id: str) -> str:
        return f"{self.config.api_base}/walletobjects/v1/loyaltyObject/{object_id}"

    def _breaker_open(self) -> bool:
        return self.breaker is not None and not self.breaker.allow()

    def _not_attempted(self, message_id: str) -> AddMessageOutcome:
        error = f"not attempted: {self.breaker.reason}"
        return AddMessageOutcome(ok=False, message_id=message_id, error=error, retryable=True, attempted=False)

    def _access_token(self, *, due_at: float, stale: str | None = None) -> str:
        """The current token, refreshed when it nears expiry or when Google just rejected `stale` (unless another
        call already replaced it). google-auth's refresh is synchronous: the calls in flight wait meanwhile. A call
        that was due before a failed refresh ended fails with that refresh's error (it would have waited for it),
        so a token endpoint that hangs costs one timeout, not one per call."""
        credentials = self.config.credentials
        if credentials.valid and (stale is None or credentials.token != stale):
            return credentials.token
        if self._token_failure is not None and due_at <= self._token_failure[0]:
            raise self._token_failure[1]
        try:
            credentials.refresh(self._token_request)
        except google_auth_exceptions.GoogleAuthError as exc:
            self._token_failure = (self._clock(), exc)
            raise
        self._token_failure = None
        return credentials.token

    @staticmethod
    def _no_answer(*, answer: TransferError, message_id: str) -> AddMessageOutcome:
        """No answer: retryable only when libcurl wrote no byte of the request (refused, TLS failed, connect
        timeout); otherwise Google may have added the message."""
        if not answer.written:
            error = f"Google Wallet unreachable: {answer.kind}"
            return AddMessageOutcome(ok=False, message_id=message_id, error=error, retryable=True)
        error = f"Google Wallet: no answer after the request was sent ({answer.kind}); it may be on the pass"
        return AddMessageOutcome(ok=False, message_id=message_id, error=error, unknown=True)

    @staticmethod
    def _outcome(*, response: Answer, message_id: str) -> AddMessageOutcome:
        status = response.status_code
        if status == 200:
            return AddMessageOutcome(ok=True, message_id=message_id)
        reason = _error_reason(response)
        if status == 404:
            return AddMessageOutcome(ok=False, message_id=message_id, error="Google Wallet object not found")
        if status in (403, 429) and "quotaexceeded" in response.text.replace(" ", "").lower():
            # Not worth retrying: the cap lasts 24 hours. The caller may add the message as TEXT instead.
            return AddMessageOutcome(
                ok=False, message_id=message_id, error="Google notification limit reached", quota_exceeded=True
            )
        error = f"Google Wallet {status}: {reason}"[:500]
        if status >= 500:
            return AddMessageOutcome(
                ok=False, message_id=message_id, error=f"{error}; it may be on the pass", unknown=True
            )
        return AddMessageOutcome(ok=False, message_id=message_id, error=error, retryable=status == 429)


ADD, PATCH = "addMessage", "PATCH"


class _Lane:
    """Where one lane stands: the call in hand, its attempts and last outcome, and what its next request is."""

    def __init__(self, steps: Lane) -> None:
        self.steps = steps
        self.call: AddMessage | None = None
        self.phase = ADD
        self.url = ""
        self.body = b""
        self.attempts = 0
        self.outcome: AddMessageOutcome | None = None
        self.token = ""  # the token the request in flight carries
        self.sent_again = False  # this attempt was already sent again after a 401
        self.send_again = False  # the next start sends the same request again (not another attempt)
        self.due_at = 0.0  # when it was due to start (see GoogleWalletClient._access_token)


class _Batch:
    """One batch on engagement_site.curl.run_transfers. Each lane starts its call when the breaker, the rate limit
    and its backoff allow; each answer becomes a retry later, the PATCH that drops our older messages, or the call's
    outcome, sent into the lane for its next call."""

    def __init__(self, client: GoogleWalletClient, lanes: Sequence[Lane]) -> None:
        self.client = client
        self.lanes = [_Lane(steps) for steps in lanes]
        self.slots = RateSlots(client.limiter, pool=client.pool, concurrency=client.concurrency, clock=client._clock)

    def run(self) -> None:
        client = self.client
        now = client._clock()
        for lane in self.lanes:
            lane.due_at = now
            self._advance(lane, None)
        run_transfers(
            client.pool,
            [lane for lane in self.lanes if lane.call is not None],
            start=self._start,
            settle=self._settle,
            concurrency=client.concurrency,
            clock=client._clock,
            sleep=client._sleep,
        )

    def _advance(self, lane: _Lane, outcome: AddMessageOutcome | None) -> bool:
        """Hand the lane the outcome of its call and take its next call; False when it has none."""
        lane.call, lane.send_again = None, False
        try:
            call = lane.steps.send(outcome)
        except StopIteration:
            return False
        except Exception:
            logger.exception("google wallet lane failed")
            return False
        now = call.now or dt.datetime.now(dt.UTC)
        payload = {
            "message": {
                "id": call.message_id,
                "header": call.header,
                "body": call.body,
                "messageType": "TEXT_AND_NOTIFY" if call.notify else "TEXT",
                "displayInterval": {
                    "start": {"date": now.isoformat()},
                    "end": {"date": (now + dt.timedelta(days=self.client.config.message_days)).isoformat()},
                },
            }
        }
        lane.call, lane.phase, lane.attempts, lane.outcome = call, ADD, 0, None
        lane.url = f"{self.client.object_url(call.object_id)}/addMessage"
        lane.body = json.dumps(payload, separators=(",", ":")).encode()
        return True

    def _finish(self, lane: _Lane, outcome: AddMessageOutcome) -> float | None:
        """The call's outcome is final: its lane's next call, if any, starts at once."""
        if not self._advance(lane, outcome):
            return None
        lane.due_at = self.client._clock()
        return 0.0

    def _start(self, lane: _Lane) -> HttpRequest | float | None:
        try:
            return self._next_request(lane)
        except Exception as exc:
            return self._unexpected(lane, exc)

    def _settle(self, lane: _Lane, answer: Answer | TransferError) -> float | None:
        try:
            if lane.phase == PATCH:
                return self._patched(lane, answer)
            return self._answered(lane, answer)
        except Exception as exc:
            return self._unexpected(lane, exc)

    def _next_request(self, lane: _Lane) -> HttpRequest | float | None:
        client = self.client
        while lane.call is not None:
            # The breaker is consulted before each call, one sent again after a 401 too, and again when its slot
            # comes (it may have opened since).
            if lane.phase == ADD and client._breaker_open():
                self.slots.drop(lane)
                self._advance(lane, self._stopped(lane))
                continue
            if (wait := self.slots.wait(lane)) > 0:
                lane.due_at = client._clock() + wait
                return wait
            if lane.send_again:
                # The same attempt, with the token just refreshed after a 401: not another attempt.
                lane.send_again = False
            else:
                if lane.phase == ADD:
                    lane.attempts += 1
                lane.sent_again = False
            return self._request(lane)
        return None

    def _stopped(self, lane: _Lane) -> AddMessageOutcome:
        """The outcome of a call the open breaker stops: its last attempt's, or not attempted when it had none (an
        attempt refused with 401 and waiting to be sent again was not acted on: it does not count)."""
        attempts = lane.attempts - 1 if lane.send_again else lane.attempts
        return lane.outcome if attempts else self.client._not_attempted(lane.call.message_id)

    def _request(self, lane: _Lane) -> HttpRequest | float | None:
        """The lane's request with the current token; without a token, the attempt fails without a request."""
        client = self.client
        if "://" not in client.config.api_base:
            # libcurl would send a URL without a scheme over plain HTTP, token and all.
            return self._not_sent(lane, "Google Wallet unreachable: GOOGLE_WALLET_API_BASE has no scheme (https://)")
        try:
            lane.token = client._access_token(due_at=lane.due_at)
        except google_auth_exceptions.GoogleAuthError as exc:
            return self._not_sent(lane, f"Google Wallet token unavailable: {type(exc).__name__}")
        headers = {"Authorization": f"Bearer {lane.token}", "Content-Type": "application/json"}
        if lane.phase == PATCH:
            return HttpRequest("PATCH", client.object_url(lane.call.object_id), headers, lane.body)
        return HttpRequest("POST", lane.url, headers, lane.body)

    def _not_sent(self, lane: _Lane, error: str) -> float | None:
        """The request could not be made: the addMessage attempt is a retryable failure; the PATCH is given up."""
        if lane.phase == PATCH:
            logger.warning("old wallet messages not removed", extra={"object_id": lane.call.object_id, "error": error})
            return self._finish(lane, lane.outcome)
        outcome = AddMessageOutcome(ok=False, message_id=lane.call.message_id, error=error, retryable=True)
        return self._conclude(lane, outcome, retry_after=None, answer=None)

    def _refresh_after_401(self, lane: _Lane, answer: Answer | TransferError) -> bool:
        """A first 401 for this attempt (the token refused: nothing was done): refresh the token and send the same
        request again, ahead of the queue, once the breaker and the rate limit allow (not counted as another attempt).
        Raises google-auth's error when no token can be had."""
        if isinstance(answer, TransferError) or answer.status_code != 401 or lane.sent_again:
            return False
        lane.sent_again = True
        lane.due_at = self.client._clock()
        self.client._access_token(due_at=lane.due_at, stale=lane.token)
        lane.send_again = True
        return True

    def _answered(self, lane: _Lane, answer: Answer | TransferError) -> float | None:
        client, message_id = self.client, lane.call.message_id
        try:
            if self._refresh_after_401(lane, answer):
                return AT_ONCE
        except google_auth_exceptions.GoogleAuthError as exc:
            error = f"Google Wallet token unavailable: {type(exc).__name__}"
            outcome = AddMessageOutcome(ok=False, message_id=message_id, error=error, retryable=True)
            return self._conclude(lane, outcome, retry_after=None, answer=None)
        if isinstance(answer, TransferError):
            return self._conclude(lane, client._no_answer(answer=answer, message_id=message_id), None, None)
        outcome = client._outcome(response=answer, message_id=message_id)
        return self._conclude(lane, outcome, retry_after=answer.headers.get("Retry-After"), answer=answer)

    def _conclude(
        self, lane: _Lane, outcome: AddMessageOutcome, retry_after: str | None, answer: Answer | None
    ) -> float | None:
        """An attempt's outcome: told to the breaker, then retried after its backoff, or followed by the PATCH
        that drops our older messages, or final."""
        client = self.client
        if client.breaker is not None:
            client.breaker.record(ok=not (outcome.retryable or outcome.unknown), error=outcome.error)
        lane.outcome = outcome
        if outcome.ok or not outcome.retryable or lane.attempts > client.max_retries:
            if outcome.ok and answer is not None:
                kept = _kept_messages(answer, keep=client.config.keep_messages)
                if kept is not None:
                    lane.phase, lane.body = PATCH, json.dumps({"messages": kept}, separators=(",", ":")).encode()
                    lane.due_at = client._clock()
                    return 0.0
            return self._finish(lane, outcome)
        logger.info(
            "google wallet call retried",
            extra={"object_id": lane.call.object_id, "attempt": lane.attempts, "error": outcome.error},
        )
        delay = retry_delay(attempt=lane.attempts - 1, backoff=client.backoff, retry_after=retry_after)
        if retry_after and retry_after.isdigit() and client.limiter is not None:
            # Google asked to slow down: every sender holds back, not only this one.
            client.limiter.pause(delay)
        lane.due_at = client._clock() + delay
        return delay

    def _patched(self, lane: _Lane, answer: Answer | TransferError) -> float | None:
        """The PATCH's answer: only logged when it failed (the message itself was added)."""
        object_id = lane.call.object_id
        try:
            if self._refresh_after_401(lane, answer):
                return AT_ONCE
        except google_auth_exceptions.GoogleAuthError as exc:
            logger.warning("old wallet messages not removed", extra={"object_id": object_id, "error": repr(exc)})
            return self._finish(lane, lane.outcome)
        if isinstance(answer, TransferError):
            logger.warning("old wallet messages not removed", extra={"object_id": object_id, "error": str(answer)})
        elif answer.status_code != 200:
            logger.warning(
                "old wallet messages not removed", extra={"object_id": object_id, "status_code": answer.status_code}
            )
        return self._finish(lane, lane.outcome)

    def _unexpected(self, lane: _Lane, exc: Exception) -> float | None:
        """Whatever went wrong, a call may have been made: the call is unknown, never sent again, and the lane
        goes on with its next call."""
        self.slots.drop(lane)
        if lane.call is None:
            return None
        logger.exception("google wallet call failed unexpectedly", extra={"object_id": lane.call.object_id})
        if lane.phase == PATCH:
            return self._finish(lane, lane.outcome)
        error = f"Google Wallet: unexpected error ({type(exc).__name__}); it may be on the pass"
        return self._finish(
            lane, AddMessageOutcome(ok=False, message_id=lane.call.message_id, error=error, unknown=True)
        )


def _kept_messages(answer: Answer, *, keep: int) -> list[dict] | None:
    """The object's messages without our oldest beyond `keep` (others' messages untouched), or None when nothing
    needs removing."""
    try:
        messages = answer.json().get("resource", {}).get("messages") or []
        ours = [m for m in messages if str(m.get("id", "")).startswith(OUR_MESSAGE_PREFIX)]
    except (ValueError, AttributeError, TypeError):
        return None
    if len(ours) <= keep:
        return None
    dropped = {id(m) for m in ours[: len(ours) - keep]}
    return [m for m in messages if id(m) not in dropped]


def _error_reason(response: Answer) -> str:
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return response.text[:200]
    return str(error.get("message") or error.get("status") or error) if isinstance(error, dict) else str(error)


def loyalty_object(*, wallet_pass: WalletPass, config: GoogleConfig) -> dict:
    """The loyalty object a save link creates on the customer's phone."""
    customer = wallet_pass.customer
    member = " ".join(part for part in (customer.first_name, customer.last_name) if part) or customer.customer_id
    return {
        "id": loyalty_object_id(issuer_id=config.issuer_id, pass_id=wallet_pass.pass_id),
        "classId": config.class_id,
        "state": "ACTIVE",
        "accountId": customer.customer_id,
        "accountName": member,
        "barcode": {"type": "QR_CODE", "value": customer.customer_id},
    }


def save_url(*, wallet_pass: WalletPass, config: GoogleConfig) -> str:
    """The "Add to Google Wallet" link: a JWT (aud google, typ savetowallet) signed by the service account."""
    if not config.class_id:
        raise ImproperlyConfigured("Google Wallet save links need GOOGLE_WALLET_CLASS_ID.")
    claims = {
        "iss": config.credentials.service_account_email,
        "aud": "google",
        "typ": "savetowallet",
        "iat": int(time.time()),
        "origins": [],
        "payload": {"loyaltyObjects": [loyalty_object(wallet_pass=wallet_pass, config=config)]},
    }
    token = jwt.encode(config.credentials.signer, claims)
    return SAVE_URL_BASE + token.decode()
