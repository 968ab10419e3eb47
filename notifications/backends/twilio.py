"""SMS through Twilio's Messages API (SMS_CHANNEL=twilio).

POST {TWILIO_API_BASE}/2010-04-01/Accounts/{sid}/Messages.json with basic auth and the form fields To,
From or MessagingServiceSid, and Body; Twilio answers 201 with the message's sid. With PUBLIC_BASE_URL set, each
message asks for delivery receipts: StatusCallback is {PUBLIC_BASE_URL}/notifications/twilio/status/ with the log
row's notification_id in the query (notifications.views.twilio_status). Error answers carry a JSON
body with Twilio's error `code`: 21610 means the recipient replied STOP (consent, not an error: the customer
is opted out of SMS), other 4xx codes are permanent, 429 and 5xx are retried.
"""

import logging
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from engagement_site.curl import Answer, HttpRequest
from notifications.backends.base import Message, Result
from notifications.backends.http import (
    BatchError,
    HttpChannelBackend,
    raise_for_transient_status,
)
from notifications.channels import Channel
from notifications.sms import sms_text

logger = logging.getLogger(__name__)

PROVIDER = "Twilio"
UNSUBSCRIBED_RECIPIENT = 21610
AUTHENTICATION_FAILED = 20003
KNOWN_ERRORS = {
    21211: "invalid 'To' phone number",
    21408: "sending to this region is not enabled",
    21610: "the recipient replied STOP",
    21612: "this number cannot receive messages from the sender",
    21614: "'To' is not a mobile number",
}


def mask_phone(phone: str) -> str:
    """Enough of a number to tell numbers apart in an error, not enough to use it."""
    return phone[:3] + "…" + phone[-2:] if len(phone) > 6 else "…"


class TwilioSmsBackend(HttpChannelBackend):
    channel = Channel.SMS

    @staticmethod
    def configuration_errors() -> list[str]:
        """What keeps this backend from sending; empty when it is ready (also used by the system check)."""
        errors = [
            f"{name} is not set." for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN") if not getattr(settings, name)
        ]
        if not settings.TWILIO_FROM_NUMBER and not settings.TWILIO_MESSAGING_SERVICE_SID:
            errors.append("Set TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID.")
        return errors

    def open(self) -> None:
        if self.is_open:
            return
        if errors := self.configuration_errors():
            raise ImproperlyConfigured("SMS_CHANNEL=twilio: " + " ".join(errors))
        self.account_sid = settings.TWILIO_ACCOUNT_SID
        self.url = f"{settings.TWILIO_API_BASE.rstrip('/')}/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        self.sender = (
            {"MessagingServiceSid": settings.TWILIO_MESSAGING_SERVICE_SID}
            if settings.TWILIO_MESSAGING_SERVICE_SID
            else {"From": settings.TWILIO_FROM_NUMBER}
        )
        self.max_segments = settings.SMS_MAX_SEGMENTS
        self.status_callback = status_callback_url()
        self._start(
            provider=PROVIDER,
            url=self.url,
            rate=float(settings.TWILIO_RATE_LIMIT),
            auth=(self.account_sid, settings.TWILIO_AUTH_TOKEN),
        )

    def _request(self, message: Message) -> HttpRequest:
        data = {
            "To": message.recipient,
            **self.sender,
            "Body": sms_text(header=message.header, body=message.body, max_segments=self.max_segments),
        }
        if self.status_callback and message.notification_id:
            data["StatusCallback"] = f"{self.status_callback}?{urlencode({'notification_id': message.notification_id})}"
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return HttpRequest("POST", self.url, headers, urlencode(data).encode())

    def _classify(self, message: Message, response: Answer, request: HttpRequest) -> Result:
        raise_for_transient_status(response, provider=PROVIDER)
        payload = _json(response)
        if 200 <= response.status_code < 300:
            return Result(log_id=message.log_id, status="sent", provider_message_id=str(payload.get("sid", "")))
        code = payload.get("code")
        if response.status_code == 401 or (response.status_code == 403 and code in (AUTHENTICATION_FAILED, None)):
            raise BatchError(f"Twilio rejected the credentials (HTTP {response.status_code}, code {code})")
        detail = KNOWN_ERRORS.get(code) or str(payload.get("message") or response.reason_phrase or "error")
        error = f"Twilio error {code} (HTTP {response.status_code}): {detail.replace(message.recipient, '…')}"
        revoked = code == UNSUBSCRIBED_RECIPIENT
        logger.warning(
            "sms refused",
            extra={
                "log_id": message.log_id,
                "status_code": response.status_code,
                "twilio_code": code,
                "to": mask_phone(message.recipient),
                "revoked": revoked,
            },
        )
        return Result(log_id=message.log_id, status="failed", error=error[:500], revoked=revoked)


def status_callback_url() -> str:
    """Where Twilio posts this project's delivery receipts: empty without a public base URL (none are asked for)."""
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    if urlsplit(base).scheme not in ("http", "https"):
        return ""
    return base + reverse("twilio-status")


def _json(response: Answer) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
