"""Google Wallet: messages on a customer's loyalty object (addMessage) and the "save to wallet" link.

Calls go through google-auth's AuthorizedSession (requests), authenticated with an OAuth2 token of the service
account in GOOGLE_WALLET_CREDENTIALS; the token is exchanged at the token_uri in that file and reused until it
expires. Google lets a pass show at most 3 notifying messages per 24 hours: the caller counts them (see
wallet.delivery) so a call that would fail with QuotaExceededException is rarely made; when it is, Google answers
HTTP 403 (or 429) with the reason "quotaExceeded" and the caller adds the message as TEXT.

addMessage is not idempotent (message ids do not dedupe): a 429 or a failure to connect is retried, but a timeout
after the request was written or a 5xx leaves the outcome unknown and is never retried. Each message of ours shows
for GOOGLE_WALLET_MESSAGE_DAYS (its displayInterval), and after an addMessage the object keeps at most
GOOGLE_WALLET_KEEP_MESSAGES of ours: older ones are removed (a PATCH of the object's messages, the only removal the
API offers), so a loyalty object never reaches Google's cap of 10 messages because of us.
"""

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from google.auth import exceptions as google_auth_exceptions
from google.auth import jwt
from google.auth.transport.requests import AuthorizedSession
from google.oauth2 import service_account

from engagement_site.transport import request_not_written
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


class GoogleWalletClient:
    """One authorised HTTP session for a batch of addMessage calls."""

    def __init__(self, *, config: GoogleConfig, max_retries: int, backoff: float, breaker: Any = None) -> None:
        self.config = config
        self.max_retries = max_retries
        self.backoff = backoff
        self.breaker = breaker
        self.session: AuthorizedSession | None = None

    def open(self) -> None:
        self.session = AuthorizedSession(self.config.credentials)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def object_url(self, object_id: str) -> str:
        return f"{self.config.api_base}/walletobjects/v1/loyaltyObject/{object_id}"

    def add_message(
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
        outcome = AddMessageOutcome(ok=False, message_id=message_id, error="not attempted", retryable=True)
        for attempt in range(self.max_retries + 1):
            if self.breaker is not None and not self.breaker.allow():
                if attempt > 0:
                    return outcome
                error = f"not attempted: {self.breaker.reason}"
                return AddMessageOutcome(ok=False, message_id=message_id, error=error, retryable=True, attempted=False)
            outcome, retry_after, response = self._call(url=f"{self.object_url(object_id)}/addMessage", json=payload)
            if self.breaker is not None:
                self.breaker.record(ok=not (outcome.retryable or outcome.unknown), error=outcome.error)
            if outcome.ok or not outcome.retryable or attempt == self.max_retries:
                break
            logger.info(
                "google wallet call retried",
                extra={"object_id": object_id, "attempt": attempt + 1, "error": outcome.error},
            )
            time.sleep(retry_delay(attempt=attempt, backoff=self.backoff, retry_after=retry_after))
        if outcome.ok and response is not None:
            self._drop_old_messages(object_id=object_id, response=response)
        return outcome

    def _call(self, *, url: str, json: dict) -> tuple[AddMessageOutcome, str | None, requests.Response | None]:
        message_id = json["message"]["id"]
        try:
            response = self.session.post(url, json=json, timeout=self.config.timeout)
        except google_auth_exceptions.GoogleAuthError as exc:
            # The token could not be had: the addMessage request itself was never made.
            error = f"Google Wallet token unavailable: {type(exc).__name__}"
            return AddMessageOutcome(ok=False, message_id=message_id, error=error, retryable=True), None, None
        except requests.RequestException as exc:
            if request_not_written(exc):
                error = f"Google Wallet unreachable: {type(exc).__name__}"
                return AddMessageOutcome(ok=False, message_id=message_id, error=error, retryable=True), None, None
            error = f"Google Wallet: no answer after the request was sent ({type(exc).__name__}); it may be on the pass"
            return AddMessageOutcome(ok=False, message_id=message_id, error=error, unknown=True), None, None
        return self._outcome(response=response, message_id=message_id), response.headers.get("Retry-After"), response

    def _drop_old_messages(self, *, object_id: str, response: requests.Response) -> None:
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
            answer = self.session.patch(
                self.object_url(object_id), json={"messages": kept}, timeout=self.config.timeout
            )
        except (requests.RequestException, google_auth_exceptions.GoogleAuthError) as exc:
            logger.warning("old wallet messages not removed", extra={"object_id": object_id, "error": repr(exc)})
            return
        if answer.status_code != 200:
            logger.warning(
                "old wallet messages not removed", extra={"object_id": object_id, "status_code": answer.status_code}
            )

    @staticmethod
    def _outcome(*, response: requests.Response, message_id: str) -> AddMessageOutcome:
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


def _error_reason(response: requests.Response) -> str:
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
