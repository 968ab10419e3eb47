"""Signed unsubscribe tokens and the absolute links that carry them (List-Unsubscribe, email footers).

A token is the customer's public id and the channel, signed with SECRET_KEY under its own salt, so it
authenticates the one-click POST by itself (no login, no CSRF token: mail providers POST it blind, RFC 8058).
Tokens do not expire: an unsubscribe link must keep working for as long as the email sits in an inbox.
Rotating SECRET_KEY invalidates them unless the old key stays in SECRET_KEY_FALLBACKS.
"""

from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.urls import reverse

from notifications.channels import Channel

SALT = "notifications.unsubscribe"


class InvalidUnsubscribeToken(Exception):
    """The token was forged, altered or truncated."""


@dataclass(frozen=True)
class UnsubscribeRequest:
    customer_id: str
    channel: str


def make_unsubscribe_token(*, customer_id: str, channel: str = Channel.EMAIL) -> str:
    """`<customer_id>.<channel>:<signature>`: short, URL-safe, and only this project can make one."""
    return signing.Signer(salt=SALT).sign(f"{customer_id}.{Channel(channel).value}")


def read_unsubscribe_token(*, token: str) -> UnsubscribeRequest:
    try:
        value = signing.Signer(salt=SALT).unsign(token)
    except signing.BadSignature as exc:
        raise InvalidUnsubscribeToken from exc
    customer_id, _, channel = value.rpartition(".")
    if not customer_id or channel not in Channel.values:
        raise InvalidUnsubscribeToken
    return UnsubscribeRequest(customer_id=customer_id, channel=channel)


def unsubscribe_url(*, customer_id: str, channel: str = Channel.EMAIL) -> str:
    """The absolute one-click link under PUBLIC_BASE_URL."""
    token = make_unsubscribe_token(customer_id=customer_id, channel=channel)
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse("notifications:unsubscribe", kwargs={"token": token})
