"""Google Wallet: messages on a customer's loyalty object (addMessage) and the "save to wallet" link.

Calls go through one httpx.AsyncClient (HTTP/2 over HTTPS: the batch's calls are multiplexed on one connection;
HTTP/1.1 connections to a plain-HTTP stand-in) on an event loop the client owns from open() to close(). They are
authenticated with an OAuth2 token of the service account in GOOGLE_WALLET_CREDENTIALS, exchanged at the token_uri
in that file, reused until it expires and refreshed once more when Google answers 401. A batch's calls go out
concurrently: at most `concurrency` (GOOGLE_WALLET_CONCURRENCY) in flight, each waiting for a slot of the rate
limiter the caller passes in (GOOGLE_WALLET_RATE_LIMIT, one budget for every process).

Google lets a pass show at most 3 notifying messages per 24 hours: the caller counts them (see wallet.delivery) so a
call that would fail with QuotaExceededException is rarely made; when it is, Google answers HTTP 403 (or 429) with
the reason "quotaExceeded" and the caller adds the message as TEXT.

addMessage is not idempotent (message ids do not dedupe): a 429 or a failure to connect is retried, but a timeout
after the request was written or a 5xx leaves the outcome unknown and is never retried. Each message of ours shows
for GOOGLE_WALLET_MESSAGE_DAYS (its displayInterval), and after an addMessage the object keeps at most
GOOGLE_WALLET_KEEP_MESSAGES of ours: older ones are removed (a PATCH of the object's messages, the only removal the
API offers), so a loyalty object never reaches Google's cap of 10 messages because of us.
"""

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import google.auth.transport
import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from google.auth import exceptions as google_auth_exceptions
from google.auth import jwt
from google.oauth2 import service_account

from engagement_site.transport import httpx_request_not_written
from wallet.models import WalletPass
from wallet.retry import retry_delay

logger = logging.getLogger(__name__)

SCOPE = "https://www.googleapis.com/auth/wallet_object.issuer"
SAVE_URL_BASE = "https://pay.google.com/gp/v/save/"
OUR_MESSAGE_PREFIX = "reengagement-"
USER_AGENT = "auto-engagement/1.0"
T = TypeVar("T")


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


class _TokenResponse(google.auth.transport.Response):
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self._response.headers

    @property
    def data(self) -> bytes:
        return self._response.content


class _TokenRequest(google.auth.transport.Request):
    """google-auth's transport over a synchronous httpx client: the token comes through the same HTTP library as
    the calls it authorises, with our timeout instead of google-auth's two-minute default."""

    def __init__(self, client: httpx.Client, *, timeout: float) -> None:
        self.client = client
        self.timeout = timeout

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs) -> _TokenResponse:
        try:
            response = self.client.request(method, url, content=body, headers=headers, timeout=timeout or self.timeout)
        except httpx.HTTPError as exc:
            raise google_auth_exceptions.TransportError(f"{type(exc).__name__}: {exc}") from exc
        return _TokenResponse(response)


class RateLimit(Protocol):
    """What the client needs of a rate limiter (notifications.backends.http.RateLimiter or the shared one)."""

    def reserve(self) -> float: ...

    def pause(self, seconds: float) -> None: ...


class GoogleWalletClient:
    """One HTTP client, event loop and OAuth2 token for the invocation's addMessage calls.

    `add_message` is a coroutine: a caller runs many of them at once on the client's loop (`run`), and the client
    keeps at most `concurrency` calls in flight, each after a slot of `limiter` (None: no limit).
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
    ) -> None:
        self.config = config
        self.max_retries = max_retries
        self.backoff = backoff
        self.breaker = breaker
        self.limiter = limiter
        self.concurrency = max(1, concurrency)
        self.client: httpx.AsyncClient | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._token_client: httpx.Client | None = None

    def open(self) -> None:
        if self.client is not None:
            return
        multiplexed = self.config.api_base.startswith("https://")
        # HTTP/2: one connection carries every call (the pool opens more only if Google ever answered HTTP/1.1);
        # HTTP/1.1 (a local stand-in): connections opened as the calls in flight need them.
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(
            http2=multiplexed, limits=limits, timeout=self.config.timeout, headers={"User-Agent": USER_AGENT}
        )
        self._token_client = httpx.Client(headers={"User-Agent": USER_AGENT})
        self._token_request = _TokenRequest(self._token_client, timeout=self.config.timeout)
        self._token_lock = asyncio.Lock()
        self._token_refreshes = 0
        self._token_error: google_auth_exceptions.GoogleAuthError | None = None
        self._gate = asyncio.Semaphore(self.concurrency)

    def close(self) -> None:
        if self.client is None:
            return
        client, self.client = self.client, None
        try:
            self.loop.run_until_complete(client.aclose())
            # The worker threads of the token refreshes and rate-limit bookings end with the invocation's loop.
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()
            self.loop = None
            if self._token_client is not None:
                self._token_client.close()
                self._token_client = None

    def run(self, work: Awaitable[T]) -> T:
        """Run a coroutine (e.g. a gather of add_message calls) on the client's loop, from synchronous code."""
        return self.loop.run_until_complete(work)

    def object_url(self, object_id: str) -> str:
        return f"{self.config.api_base}/walletobjects/v1/loyaltyObject/{object_id}"

    async def add_message(
        self, *, object_id: str, message_id: str, header: str, body: str, notify: bool, now: dt.datetime | None = None
    ) -> AddMessageOutcome:
        """addMessage on a loyalty object, shown for `message_days` from `now`; only what provably did not reach
        Google (429, no connection) is retried, 404 and other 4xx are final, a 5xx or a lost answer is unknown."""
        now = now or dt.datetime.now(dt.UTC)
        payload = {
            "message": {
                "id": message_id,
                "header": header,
                "body": body,
                "messageType": "TEXT_AND_NOTIFY" if notify else "TEXT",
                "displayInterval": {
                    "start": {"date": now.isoformat()},
                    "end": {"date": (now + dt.timedelta(days=self.config.message_days)).isoformat()},
                },
            }
        }
        url = f"{self.object_url(object_id)}/addMessage"
        outcome = AddMessageOutcome(ok=False, message_id=message_id, error="not attempted", retryable=True)
        response = None
        for attempt in range(self.max_retries + 1):
            if self._breaker_open():
                return outcome if attempt > 0 else self._not_attempted(message_id)
            async with self._gate:
                await self._take_slot()
                # Consulted again: the breaker may have opened while this call waited for its slot.
                if self._breaker_open():
                    return outcome if attempt > 0 else self._not_attempted(message_id)
                outcome, retry_after, response = await self._call(url=url, json=payload)
            if self.breaker is not None:
                self.breaker.record(ok=not (outcome.retryable or outcome.unknown), error=outcome.error)
            if outcome.ok or not outcome.retryable or attempt == self.max_retries:
                break
            logger.info(
                "google wallet call retried",
                extra={"object_id": object_id, "attempt": attempt + 1, "error": outcome.error},
            )
            delay = retry_delay(attempt=attempt, backoff=self.backoff, retry_after=retry_after)
            if retry_after and retry_after.isdigit() and self.limiter is not None:
                # Google asked to slow down: every sender holds back, not only this one.
                self.limiter.pause(delay)
            await asyncio.sleep(delay)
        if outcome.ok and response is not None:
            await self._drop_old_messages(object_id=object_id, response=response)
        return outcome

    def _breaker_open(self) -> bool:
        return self.breaker is not None and not self.breaker.allow()

    def _not_attempted(self, message_id: str) -> AddMessageOutcome:
        error = f"not attempted: {self.breaker.reason}"
        return AddMessageOutcome(ok=False, message_id=message_id, error=error, retryable=True, attempted=False)

    async def _take_slot(self) -> None:
        """Wait for the rate limit. The shared budget may ask its store (a database statement): that runs in a
        worker thread, so the loop never blocks on it (and Django refuses database calls from a running loop)."""
        if self.limiter is None:
            return
        wait = await asyncio.to_thread(self.limiter.reserve)
        if wait > 0:
            await asyncio.sleep(wait)

    async def _access_token(self, *, stale: str | None = None) -> str:
        """The current token, refreshed when it nears expiry or when Google just rejected `stale`. Under a lock, so
        concurrent calls share one refresh; google-auth's refresh is synchronous and runs in a worker thread, so the
        calls already in flight go on meanwhile. A refresh that failed while a call waited for the lock fails that
        call too (a token endpoint that hangs costs one timeout, not one per call in flight)."""
        credentials = self.config.credentials
        if credentials.valid and stale is None:
            return credentials.token
        refreshes_seen = self._token_refreshes
        async with self._token_lock:
            if self._token_refreshes != refreshes_seen and self._token_error is not None:
                raise self._token_error
            if not credentials.valid or (stale is not None and credentials.token == stale):
                try:
                    await asyncio.to_thread(credentials.refresh, self._token_request)
                except google_auth_exceptions.GoogleAuthError as exc:
                    self._token_error = exc
                    raise
                else:
                    self._token_error = None
                finally:
                    self._token_refreshes += 1
            return credentials.token

    async def _request(self, method: str, url: str, *, json: dict) -> httpx.Response:
        """One authorised request; a 401 (the token refused: nothing was done) refreshes the token and repeats it
        once. google-auth's errors mean the request itself was never made."""
        token = await self._access_token()
        response = await self.client.request(method, url, json=json, headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 401:
            token = await self._access_token(stale=token)
            response = await self.client.request(method, url, json=json, headers={"Authorization": f"Bearer {token}"})
        return response

    async def _call(self, *, url: str, json: dict) -> tuple[AddMessageOutcome, str | None, httpx.Response | None]:
        message_id = json["message"]["id"]
        try:
            response = await self._request("POST", url, json=json)
        except google_auth_exceptions.GoogleAuthError as exc:
            # The token could not be had: the addMessage request itself was never made.
            error = f"Google Wallet token unavailable: {type(exc).__name__}"
            return AddMessageOutcome(ok=False, message_id=message_id, error=error, retryable=True), None, None
        except httpx.HTTPError as exc:
            if httpx_request_not_written(exc) or isinstance(exc, httpx.UnsupportedProtocol):
                error = f"Google Wallet unreachable: {type(exc).__name__}"
                return AddMessageOutcome(ok=False, message_id=message_id, error=error, retryable=True), None, None
            error = f"Google Wallet: no answer after the request was sent ({type(exc).__name__}); it may be on the pass"
            return AddMessageOutcome(ok=False, message_id=message_id, error=error, unknown=True), None, None
        return self._outcome(response=response, message_id=message_id), response.headers.get("Retry-After"), response

    async def _drop_old_messages(self, *, object_id: str, response: httpx.Response) -> None:
        """Keep at most `keep_messages` of ours on the object (the newest); others' messages are left alone."""
        try:
            messages = response.json().get("resource", {}).get("messages") or []
        except (ValueError, AttributeError):
            return
        ours = [m for m in messages if str(m.get("id", "")).startswith(OUR_MESSAGE_PREFIX)]
        if len(ours) <= self.config.keep_messages:
            return
        dropped = {id(m) for m in ours[: len(ours) - self.config.keep_messages]}
        kept = [m for m in messages if id(m) not in dropped]
        try:
            async with self._gate:
                await self._take_slot()
                answer = await self._request("PATCH", self.object_url(object_id), json={"messages": kept})
        except (httpx.HTTPError, google_auth_exceptions.GoogleAuthError) as exc:
            logger.warning("old wallet messages not removed", extra={"object_id": object_id, "error": repr(exc)})
            return
        if answer.status_code != 200:
            logger.warning(
                "old wallet messages not removed", extra={"object_id": object_id, "status_code": answer.status_code}
            )

    @staticmethod
    def _outcome(*, response: httpx.Response, message_id: str) -> AddMessageOutcome:
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


def _error_reason(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
    except ValueError:
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
