"""Mobile push through Firebase Cloud Messaging HTTP v1 (PUSH_CHANNEL=fcm).

POST {FCM_API_BASE}/v1/projects/{project}/messages:send with an OAuth2 access token of a service account
(FCM_CREDENTIALS, the JSON key file; its token_uri is where tokens come from). The token is fetched once,
reused across the batch, refreshed when it nears expiry and once more if FCM answers 401. FCM speaks HTTP/2: the
batch's requests are multiplexed over a few connections (notifications.backends.http).

A token FCM no longer knows (UNREGISTERED), one it says is not a registration token (INVALID_ARGUMENT on
message.token) or one from another Firebase project (SENDER_ID_MISMATCH) is dead: the result is revoked so
the run clears the customer's push_token and never tries it again.
"""

import json
import logging
import threading
from typing import Any

import google.auth.exceptions
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from google.oauth2 import service_account

from engagement_site.curl import Answer, HttpRequest
from engagement_site.transport import GoogleAuthRequest
from notifications.backends.base import Message, Result
from notifications.backends.http import (
    NOT_PROCESSED,
    BatchError,
    Clock,
    HttpChannelBackend,
    SendAgain,
    Sleep,
    raise_for_transient_status,
)
from notifications.channels import Channel

logger = logging.getLogger(__name__)

PROVIDER = "FCM"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
DEAD_TOKEN_CODES = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
# A 401 about the APNs / web-push credentials uploaded to Firebase, not about our OAuth token: that message fails
# (firebase-admin maps both to ThirdPartyAuthError); the batch goes on and the token is not refreshed.
THIRD_PARTY_AUTH_CODES = frozenset({"THIRD_PARTY_AUTH_ERROR", "APNS_AUTH_ERROR"})
# FCM documents 503 UNAVAILABLE as "the server is overloaded": retried with backoff; a 500 INTERNAL may have sent.
FCM_NOT_PROCESSED = NOT_PROCESSED | {503}


def _read_key_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as key_file:
            info = json.load(key_file)
    except OSError as exc:
        raise ImproperlyConfigured(f"FCM_CREDENTIALS: cannot read {path!r} ({exc.strerror}).") from exc
    except ValueError as exc:
        raise ImproperlyConfigured(f"FCM_CREDENTIALS: {path!r} is not JSON.") from exc
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ImproperlyConfigured(f"FCM_CREDENTIALS: {path!r} is not a service-account key file.")
    return info


class FcmPushBackend(HttpChannelBackend):
    channel = Channel.PUSH
    http2 = True

    def __init__(self, *, channel: str = "", clock: Clock | None = None, sleep: Sleep | None = None) -> None:
        super().__init__(channel=channel, clock=clock, sleep=sleep)
        self._token_lock = threading.Lock()
        self._sent_again: set[int] = set()

    @staticmethod
    def configuration_errors() -> list[str]:
        """What keeps this backend from sending; empty when it is ready (also used by the system check)."""
        if not settings.FCM_CREDENTIALS:
            return ["FCM_CREDENTIALS is not set."]
        try:
            info = _read_key_file(settings.FCM_CREDENTIALS)
        except ImproperlyConfigured as exc:
            return [str(exc)]
        if not settings.FCM_PROJECT_ID and not info.get("project_id"):
            return ["FCM_PROJECT_ID is not set and the key file has no project_id."]
        return []

    def open(self) -> None:
        if self.is_open:
            return
        if errors := self.configuration_errors():
            raise ImproperlyConfigured("PUSH_CHANNEL=fcm: " + " ".join(errors))
        info = _read_key_file(settings.FCM_CREDENTIALS)
        try:
            self.credentials = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
        except ValueError as exc:
            raise ImproperlyConfigured(f"FCM_CREDENTIALS: unusable service-account key ({exc}).") from exc
        project = settings.FCM_PROJECT_ID or info["project_id"]
        self.url = f"{settings.FCM_API_BASE.rstrip('/')}/v1/projects/{project}/messages:send"
        self._start(provider=PROVIDER, url=self.url, rate=float(settings.FCM_RATE_LIMIT))
        self._token_request = GoogleAuthRequest(timeout=self.options.timeout)

    def _access_token(self, *, stale: str | None = None) -> str:
        """The current token, refreshed when it nears expiry or when FCM just rejected `stale` (unless another
        answer already replaced it)."""
        with self._token_lock:
            if not self.credentials.valid or (stale is not None and self.credentials.token == stale):
                try:
                    self.credentials.refresh(self._token_request)
                except google.auth.exceptions.RefreshError as exc:
                    reason = str(exc.args[0]) if exc.args else "refused"
                    raise BatchError(
                        f"FCM OAuth2 token refused: {reason[:200]}", retryable=bool(getattr(exc, "retryable", False))
                    ) from exc
                except google.auth.exceptions.TransportError as exc:
                    raise BatchError("could not reach the OAuth2 token endpoint", retryable=True) from exc
                logger.info("fcm token refreshed", extra={"expiry": self.credentials.expiry})
            return self.credentials.token

    def _request(self, message: Message) -> HttpRequest:
        payload = {
            "message": {"token": message.recipient, "notification": {"title": message.header, "body": message.body}}
        }
        return HttpRequest.json("POST", self.url, payload, {"Authorization": f"Bearer {self._access_token()}"})

    def _refresh_after_401(self, message: Message, answer: Answer, request: HttpRequest) -> None:
        """A 401 about our token: refresh it (once per message) and send the message again at once."""
        if answer.status_code != 401 or _error_code(_error(answer)) in THIRD_PARTY_AUTH_CODES:
            return
        if message.log_id in self._sent_again:
            return
        self._sent_again.add(message.log_id)
        self._access_token(stale=request.headers["Authorization"].removeprefix("Bearer "))
        raise SendAgain("FCM 401: access token refreshed")

    def _classify(self, message: Message, response: Answer, request: HttpRequest) -> Result:
        self._refresh_after_401(message, response, request)
        raise_for_transient_status(response, provider=PROVIDER, not_processed=FCM_NOT_PROCESSED)
        if 200 <= response.status_code < 300:
            return Result(
                log_id=message.log_id, status="sent", provider_message_id=str(_json(response).get("name", ""))
            )
        error = _error(response)
        code = _error_code(error)
        status = error.get("status") or ""
        description = str(error.get("message") or response.reason_phrase or "error")[:300]
        if response.status_code == 401 and code not in THIRD_PARTY_AUTH_CODES:
            raise BatchError("FCM rejected the OAuth2 token after a refresh (HTTP 401)")
        if response.status_code == 403 and code not in DEAD_TOKEN_CODES:
            raise BatchError(f"FCM refused the service account (HTTP 403 {status}): {description}")
        revoked = code in DEAD_TOKEN_CODES or ("INVALID_ARGUMENT" in (code, status) and _about_the_token(error))
        logger.warning(
            "push refused",
            extra={"log_id": message.log_id, "status_code": response.status_code, "fcm_code": code, "revoked": revoked},
        )
        label = code or status or f"HTTP {response.status_code}"
        return Result(log_id=message.log_id, status="failed", error=f"FCM {label}: {description}", revoked=revoked)


def _json(response: Answer) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _error(response: Answer) -> dict[str, Any]:
    error = _json(response).get("error")
    return error if isinstance(error, dict) else {}


def _details(error: dict[str, Any]) -> list[dict[str, Any]]:
    details = error.get("details")
    return [detail for detail in details if isinstance(detail, dict)] if isinstance(details, list) else []


def _error_code(error: dict[str, Any]) -> str:
    """FCM's own errorCode (UNREGISTERED, QUOTA_EXCEEDED, ...) from the error details, else ""."""
    for detail in _details(error):
        if str(detail.get("@type", "")).endswith("google.firebase.fcm.v1.FcmError") and detail.get("errorCode"):
            return str(detail["errorCode"])
    return ""


def _about_the_token(error: dict[str, Any]) -> bool:
    """An INVALID_ARGUMENT names the token when a field violation is on message.token or its text says so."""
    for detail in _details(error):
        for violation in detail.get("fieldViolations") or []:
            if isinstance(violation, dict) and violation.get("field") == "message.token":
                return True
    return "registration token" in str(error.get("message", "")).lower()
