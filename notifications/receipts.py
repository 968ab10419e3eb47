"""Delivery receipts: what a provider reports after it accepted a message (docs/channels.md, "Delivery receipts").

Twilio's 201 means queued, an ESP's 200 means accepted: whether the message arrived comes later, as a Twilio
StatusCallback or an email tracking event (django-anymail). Each becomes a `Receipt`, announced with the
`delivery_reported` signal (notifications.signals); the app that owns the results summary records it on the log row
(autoengagement.services.receipts), in the summary's lock order. This module only reads what providers send:
- `twilio_signature` / `twilio_signature_valid`: Twilio's X-Twilio-Signature (HMAC-SHA1 of the URL and the sorted
  POST parameters, base64, keyed with the auth token);
- `twilio_receipt`: a StatusCallback's form as a receipt (None for progress: queued, sending, sent);
- `anymail_receipt`: an anymail tracking event as a receipt (None for opens, clicks and the like).

What a receipt asks of consent: a number that cannot receive texts (Twilio 30003 unreachable, 30005 unknown or
inactive, 30006 landline or unreachable carrier) is marked undeliverable; a STOP (21610) opts the customer out of
SMS; a hard bounce, a rejection, a complaint or an ESP-level unsubscribe opts the address out of email.
"""

import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from notifications.channels import Channel

Outcome = Literal["delivered", "undelivered", "consent"]
ConsentAction = Literal["", "opt_out", "undeliverable"]

# Twilio error codes a StatusCallback carries (https://www.twilio.com/docs/api/errors).
TWILIO_ERRORS = {
    "21610": "Attempt to send to unsubscribed recipient",
    "30001": "Queue overflow",
    "30002": "Account suspended",
    "30003": "Unreachable destination handset",
    "30004": "Message blocked",
    "30005": "Unknown destination handset",
    "30006": "Landline or unreachable carrier",
    "30007": "Message filtered",
    "30008": "Unknown error",
}
# The number cannot receive texts: the customer's SMS is skipped until their phone number changes.
TWILIO_UNDELIVERABLE_CODES = frozenset({"30003", "30005", "30006"})
TWILIO_STOP_CODE = "21610"
TWILIO_DELIVERED = frozenset({"delivered", "read"})
TWILIO_UNDELIVERED = frozenset({"undelivered", "failed"})


@dataclass(frozen=True)
class Receipt:
    """What a provider reported about one message.

    channel, provider_message_id: the message as the provider knows it (Twilio's MessageSid, the ESP's message id).
    notification_id: our id, when the provider hands it back (the StatusCallback URL's query): then the row is
    found by it and must also carry (or not yet know) `provider_message_id`.
    outcome: delivered, undelivered (with `error`, the code and message), or consent (no news about delivery,
    only about the recipient: a complaint, an unsubscribe at the ESP).
    consent: what it means for the customer on this channel: opt_out, or undeliverable (SMS: this number).
    recipient: the address or number the provider reported on; consent changes only while the customer still has it.
    """

    channel: str
    provider_message_id: str
    outcome: Outcome
    error: str = ""
    consent: ConsentAction = ""
    reason: str = ""
    recipient: str = ""
    notification_id: str = ""


def twilio_signature(*, url: str, params: Iterable[tuple[str, str]], auth_token: str) -> str:
    """Twilio's request signature: the full URL, then each POST parameter's name and value sorted by name (and
    value), HMAC-SHA1 with the auth token, base64 (https://www.twilio.com/docs/usage/security#validating-requests)."""
    payload = url + "".join(f"{name}{value}" for name, value in sorted(set(params)))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def twilio_signature_valid(*, url: str, params: Iterable[tuple[str, str]], auth_token: str, signature: str) -> bool:
    """Whether `signature` (the X-Twilio-Signature header) signs this request; False without an auth token."""
    if not auth_token or not signature:
        return False
    expected = twilio_signature(url=url, params=params, auth_token=auth_token)
    return hmac.compare_digest(expected.encode(), signature.encode())


def twilio_receipt(form: dict[str, str], *, notification_id: str = "") -> Receipt | None:
    """A StatusCallback's form as a receipt; None for a status that says nothing final (queued, sending, sent...)."""
    status = form.get("MessageStatus", form.get("SmsStatus", "")).lower()
    sid = form.get("MessageSid", form.get("SmsSid", ""))
    if status in TWILIO_DELIVERED:
        return Receipt(Channel.SMS, sid, "delivered", notification_id=notification_id)
    if status not in TWILIO_UNDELIVERED:
        return None
    code = form.get("ErrorCode", "").strip()
    message = form.get("ErrorMessage", "").strip() or TWILIO_ERRORS.get(code, "")
    error = f"{code}: {message}" if code and message else code or message or status
    consent: ConsentAction = ""
    if code in TWILIO_UNDELIVERABLE_CODES:
        consent = "undeliverable"
    elif code == TWILIO_STOP_CODE:
        consent = "opt_out"
    return Receipt(
        Channel.SMS,
        sid,
        "undelivered",
        error=f"Twilio {error}"[:500],
        consent=consent,
        reason=f"Twilio {error}"[:200],
        recipient=form.get("To", ""),
        notification_id=notification_id,
    )


# anymail's normalised event types (anymail.signals.EventType) and what each says about the message.
ANYMAIL_DELIVERED = frozenset({"delivered"})
# Permanent: the address does not exist or refuses us. The message did not arrive and the address is opted out.
ANYMAIL_HARD = frozenset({"bounced", "rejected"})
# Temporary or ours (a deferral, the ESP failing to send): not arrived, the address kept.
ANYMAIL_SOFT = frozenset({"deferred", "failed"})
# About the recipient, not the message (a spam complaint means it did arrive): opted out, delivery untouched.
ANYMAIL_CONSENT = frozenset({"complained", "unsubscribed"})


def anymail_receipt(event: Any) -> Receipt | None:
    """An anymail tracking event (anymail.signals.AnymailTrackingEvent) as a receipt; None for the rest (queued,
    sent, opened, clicked...) and for an event without a message id (it cannot be matched to a message)."""
    kind = str(getattr(event, "event_type", "") or "")
    message_id = str(getattr(event, "message_id", "") or "")
    if not message_id:
        return None
    recipient = str(getattr(event, "recipient", "") or "")
    if kind in ANYMAIL_DELIVERED:
        return Receipt(Channel.EMAIL, message_id, "delivered", recipient=recipient)
    reason = str(getattr(event, "reject_reason", "") or "")
    label = f"{kind} ({reason})" if reason and reason != kind else kind
    detail = " ".join(str(getattr(event, "description", "") or getattr(event, "mta_response", "") or "").split())
    text = f"{label}: {detail}" if detail else label
    if kind in ANYMAIL_HARD:
        return Receipt(
            Channel.EMAIL,
            message_id,
            "undelivered",
            error=text[:500],
            consent="opt_out",
            reason=text[:200],
            recipient=recipient,
        )
    if kind in ANYMAIL_SOFT:
        return Receipt(Channel.EMAIL, message_id, "undelivered", error=text[:500], recipient=recipient)
    if kind in ANYMAIL_CONSENT:
        return Receipt(Channel.EMAIL, message_id, "consent", consent="opt_out", reason=text[:200], recipient=recipient)
    return None
