"""What each channel would show for a sample customer, step by step and variant by variant (the admin's preview).

The sample customer is "Ana", inactive for the step's after_days, with the attributes of one real customer of the
business (the newest of its latest customers who has any), else none, so attribute placeholders show their
fallbacks. Rendering is templating.render's, as the run's: HTML-escaped values in an email's own HTML. An email
without its own HTML shows the standard layout the email backend sends.
"""

import re
from dataclasses import dataclass
from typing import Any

from django.template.loader import render_to_string

from autoengagement.journeys import Content, journey_of
from autoengagement.models import AutoEngagementConfig
from autoengagement.templating import render
from notifications.channels import Channel
from notifications.sms import sms_size, sms_text
from wallet.models import Customer

SAMPLE_FIRST_NAME = "Ana"
# The short texts first, side by side; the email (its HTML in a frame) below them.
PREVIEW_ORDER = (Channel.WALLET, Channel.SMS, Channel.PUSH, Channel.EMAIL)
# How many of the business's latest customers are looked at for one with attributes (index order, bounded).
SAMPLE_CUSTOMERS_SCANNED = 100
# An email's HTML may load nothing in the preview (no tracking pixel, no remote font): inline styles and data: only.
PREVIEW_CSP = (
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
    'img-src data:; font-src data:">'
)
_HEAD = re.compile(r"<head(?:\s[^>]*)?>", re.IGNORECASE)


@dataclass(frozen=True)
class ChannelPreview:
    channel: str
    label: str
    enabled: bool  # among the config's channels
    header: str  # wallet header, email subject, push title; empty for SMS
    body: str  # wallet and push body, email text, the SMS as sent
    html: str = ""  # email only: the document shown in a sandboxed frame
    note: str = ""


@dataclass(frozen=True)
class VariantPreview:
    name: str  # empty for a step without variants
    weight: int
    channels: tuple[ChannelPreview, ...]


@dataclass(frozen=True)
class StepPreview:
    number: int
    after_days: int
    variants: tuple[VariantPreview, ...]


@dataclass(frozen=True)
class JourneyPreview:
    first_name: str
    sample_customer_id: str  # whose attributes are used; empty when none has any
    attributes: dict[str, Any]
    steps: tuple[StepPreview, ...]


def sample_attributes(*, business_id: int) -> tuple[str, dict[str, Any]]:
    """(customer_id, attributes) of the newest of the business's latest customers with attributes, or ("", {})."""
    rows = (
        Customer.objects.filter(business_id=business_id)
        .order_by("-pk")
        .values_list("customer_id", "attributes")[:SAMPLE_CUSTOMERS_SCANNED]
    )
    for customer_id, attributes in rows:
        if isinstance(attributes, dict) and attributes:
            return customer_id, attributes
    return "", {}


def journey_preview(*, config: AutoEngagementConfig) -> JourneyPreview:
    customer_id, attributes = sample_attributes(business_id=config.business_id)
    steps = journey_of(
        steps=config.steps, message_template=config.get_message_template(), inactivity_days=config.inactivity_days
    )
    enabled = set(config.channels) if isinstance(config.channels, list) else set()
    previews = []
    for step in steps:
        values = {
            "first_name": SAMPLE_FIRST_NAME,
            "business_name": config.business.name,
            "days_inactive": step.after_days,
        }
        variants = tuple(
            VariantPreview(
                variant.name,
                variant.weight,
                tuple(
                    channel_preview(Channel(channel), variant.content(channel), values, attributes, channel in enabled)
                    for channel in PREVIEW_ORDER
                ),
            )
            for variant in step.variants
        )
        previews.append(StepPreview(step.number, step.after_days, variants))
    return JourneyPreview(SAMPLE_FIRST_NAME, customer_id, attributes, tuple(previews))


def channel_preview(
    channel: Channel, content: Content, values: dict[str, Any], attributes: dict[str, Any], enabled: bool
) -> ChannelPreview:
    header, body = render(content.header, values, attributes), render(content.body, values, attributes)
    if channel == Channel.SMS:
        text = sms_text(header=header, body=body)
        size = sms_size(text)
        note = f"{len(text)} characters, {size.segments} segment{'s' if size.segments != 1 else ''} ({size.encoding})"
        return ChannelPreview(channel, channel.label, enabled, "", text, note=note)
    if channel == Channel.EMAIL:
        subject = " ".join(header.split())  # as the email backend writes it
        if content.html:
            html, note = render(content.html, values, attributes, escape=True), "The step's own HTML."
        else:
            html = render_to_string(
                "notifications/email/reengagement.html",
                {"header": header, "body": body, "business_name": values["business_name"], "unsubscribe_url": "#"},
            )
            note = "No HTML of its own: the standard layout, from the text."
        return ChannelPreview(channel, channel.label, enabled, subject, body, html=with_preview_csp(html), note=note)
    return ChannelPreview(channel, channel.label, enabled, header, body)


def with_preview_csp(html: str) -> str:
    """The document with a policy that forbids it any request, in its head (or first, for a fragment)."""
    match = _HEAD.search(html)
    if match is None:
        return PREVIEW_CSP + html
    return html[: match.end()] + PREVIEW_CSP + html[match.end() :]
