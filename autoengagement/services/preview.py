"""What a run would do right now: audience, reach per channel, a rendered sample and warnings.

Warnings are per channel and, for a journey, per step and variant: text longer than a lock screen or one SMS
segment shows (rendered for the sample customer), a step's content for a channel the config does not use, a step
that max_inactivity_days leaves no one to send to, and a template attribute that no customer of the business has.
"""

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q

from autoengagement import journeys
from autoengagement.journeys import variant_for
from autoengagement.models import AutoEngagementConfig
from autoengagement.services.audience import audience_queryset, config_journey, quiet_since_expression
from autoengagement.services.delivery import FIRST_NAME_FALLBACK
from autoengagement.services.scheduling import local_today
from autoengagement.templating import render
from notifications import consent
from notifications.channels import Channel
from notifications.sms import sms_size
from wallet.models import Customer, WalletPass

# About what a lock screen (a wallet pass change message, a push notification) shows before cutting the text off.
LOCK_SCREEN_CHARACTERS = 90
# {attributes.NAME} and {attributes.NAME|fallback}, as autoengagement.templating reads them (templates are valid by
# then: any such brace is one of these).
ATTRIBUTE_PLACEHOLDER = re.compile(r"\{attributes\.([A-Za-z0-9_]+)(?:\|[^{}|]*)?\}")

Warning = dict[str, Any]  # {"channel": str | None, "step": int | None, "variant": str, "message": str}


@dataclass(frozen=True)
class Preview:
    audience: int
    reachable: dict[str, int]
    left_out_by_max_inactivity_days: int
    sample: dict[str, str] | None
    warnings: list[Warning] = field(default_factory=list)
    local_date: str = ""
    # The audience by the step due to each customer (the step's number, as text), every step of the journey listed.
    steps: dict[str, int] = field(default_factory=dict)


def _reachable_condition(channel: str) -> Q:
    if channel == Channel.WALLET:
        return Q(has_wallet_pass=True)
    return consent.sendable_q(channel=channel)


def _warning(message: str, *, channel: str | None = None, step: int | None = None, variant: str = "") -> Warning:
    return {"channel": channel, "step": step, "variant": variant, "message": message}


def text_warnings(*, channels: list[str], header: str, body: str) -> list[Warning]:
    """Where the rendered text is longer than the channel shows at once."""
    warnings = []
    for channel in channels:
        if message := _text_warning(channel, header, body):
            warnings.append(_warning(message, channel=channel))
    return warnings


def _text_warning(channel: str, header: str, body: str) -> str:
    """What is too long in one channel's rendered text ("" when nothing is)."""
    if channel in (Channel.WALLET, Channel.PUSH) and len(body) > LOCK_SCREEN_CHARACTERS:
        return (
            f"The body has {len(body)} characters; a lock screen shows about {LOCK_SCREEN_CHARACTERS}, the rest is "
            "cut off."
        )
    if channel == Channel.SMS:
        # The text exactly as the SMS backend composes it (notifications.sms.sms_text): header, a newline, then the
        # body; a step's own SMS text has no header.
        header, body = header.strip(), body.strip()
        size = sms_size(f"{header}\n{body}" if header and body else header or body)
        if size.segments > 1:
            limit = "160 GSM-7 characters" if size.encoding == "GSM-7" else "70 characters (it has non-GSM characters)"
            what = "Header and body need" if header and body else "The text needs"
            return f"{what} {size.segments} SMS segments; one segment holds {limit}."
    return ""


def journey_warnings(*, config: AutoEngagementConfig, values: Mapping[str, object]) -> list[Warning]:
    """Per step, channel and variant of the config's journey: text too long for the channel (rendered with `values`,
    attributes as their fallbacks), content for a channel the config does not use, and steps waiting longer than
    max_inactivity_days. Variants that share a channel's content are warned about once, as the step's."""
    steps = journeys.journey_of(
        steps=config.steps, message_template=config.get_message_template(), inactivity_days=config.inactivity_days
    )
    warnings: list[Warning] = []
    for step, raw in zip(steps, config.steps or [], strict=True):
        place = f"step {step.number}"
        if config.max_inactivity_days is not None and step.after_days > config.max_inactivity_days:
            warnings.append(
                _warning(
                    f"{place} waits {step.after_days} days, but customers inactive for more than max_inactivity_days "
                    f"({config.max_inactivity_days}) are left alone: it is never sent.",
                    step=step.number,
                )
            )
        for channel in _unused_channels(raw, config.channels):
            warnings.append(
                _warning(
                    f"{place} has content for {channel}, which is not one of the config's channels: it is never sent.",
                    channel=channel,
                    step=step.number,
                )
            )
        for channel in config.channels:
            for variant, content in _distinct_contents(step, channel):
                header = render(content.header, values)
                body = render(content.body, values)
                if message := _text_warning(channel, header, body):
                    at = f"{place}, variant {variant}" if variant else place
                    warnings.append(_warning(f"{at}: {message}", channel=channel, step=step.number, variant=variant))
    return warnings


def _unused_channels(raw_step: Mapping[str, Any], channels: list[str]) -> list[str]:
    owners = [raw_step, *raw_step.get("variants", [])]
    return [channel for channel in Channel.values if channel not in channels and any(channel in o for o in owners)]


def _distinct_contents(step: journeys.Step, channel: str) -> list[tuple[str, journeys.Content]]:
    """(variant name, content) of a channel: one pair named "" when every variant sends the same."""
    contents = [(variant.name, variant.content(channel)) for variant in step.variants]
    if len({content for _name, content in contents}) == 1:
        return [("", contents[0][1])]
    return contents


def _templates(config: AutoEngagementConfig) -> Iterator[tuple[str, str]]:
    """(where, text) of every template the config sends: its message_template, or every text of its journey."""
    if not config.steps:
        for text in config.get_message_template().values():
            yield "message_template", text
        return
    for number, step in enumerate(config.steps, start=1):
        owners = [(f"step {number}", step)]
        owners += [(f"step {number}, variant {variant['name']}", variant) for variant in step.get("variants", [])]
        for place, owner in owners:
            for name in journeys.CONTENT_FIELDS:
                for text in (owner.get(name) or {}).values():
                    yield f"{place}, {name}", text


def attribute_warnings(*, config: AutoEngagementConfig) -> list[Warning]:
    """A warning naming each attribute the templates use that no customer of the business has (so everyone gets the
    placeholder's fallback). One query, whatever the number of attributes and customers; none when no template
    uses an attribute."""
    used: dict[str, list[str]] = {}
    for place, text in _templates(config):
        for name in ATTRIBUTE_PLACEHOLDER.findall(text):
            if place not in used.setdefault(name, []):
                used[name].append(place)
    if not used:
        return []
    names = sorted(used)
    counts = Customer.objects.filter(business_id=config.business_id).aggregate(
        **{f"has_{index}": Count("pk", filter=Q(attributes__has_key=name)) for index, name in enumerate(names)}
    )
    return [
        _warning(
            f"No customer of this business has the attribute {name!r}: {{attributes.{name}}} renders its fallback "
            f"(or nothing) for everyone. Used in: {'; '.join(used[name])}."
        )
        for index, name in enumerate(names)
        if not counts[f"has_{index}"]
    ]


def config_preview(*, config: AutoEngagementConfig, now: dt.datetime) -> Preview:
    """A few aggregate queries, whatever the number of customers; writes and sends nothing.

    The sample is the first customer's message on the config's first channel: their step, their variant, their
    attributes. With steps, the warnings cover every step's and variant's content on each channel, for that
    customer."""
    journey = config_journey(config)
    audience = audience_queryset(config=config, now=now).annotate(
        has_wallet_pass=Exists(WalletPass.objects.filter(customer_id=OuterRef("pk")))
    )
    per_step = {f"step_{step.number}": Count("pk", filter=Q(step=step.number)) for step in journey}
    counts = audience.aggregate(
        total=Count("pk"),
        **{channel: Count("pk", filter=_reachable_condition(channel)) for channel in config.channels},
        **(per_step if config.steps else {}),
    )
    total = counts.pop("total")
    steps = {str(step.number): counts.pop(f"step_{step.number}", total) for step in journey}
    left_out = 0
    if config.max_inactivity_days is not None:
        left_out = (
            Customer.objects.filter(business_id=config.business_id)
            .annotate(quiet_since=quiet_since_expression())
            .filter(quiet_since__lt=now - dt.timedelta(days=config.max_inactivity_days))
            .count()
        )
    sample_row = (
        audience.order_by("pk").values("customer_id", "first_name", "quiet_since", "attributes", "step").first()
    )
    if sample_row is None:
        sample_row = {
            "customer_id": "",
            "first_name": "",
            "quiet_since": now - dt.timedelta(days=journey[0].after_days),
            "attributes": {},
            "step": 1,
        }
    values = {
        "first_name": sample_row["first_name"] or FIRST_NAME_FALLBACK,
        "business_name": config.business.name,
        "days_inactive": max((now - sample_row["quiet_since"]).days, 0),
    }
    attributes = sample_row["attributes"]
    step = journey[sample_row["step"] - 1]
    variant = variant_for(
        step, config_id=config.config_id, customer_id=sample_row["customer_id"], spell_start=sample_row["quiet_since"]
    )
    content = variant.content(config.channels[0])
    header, body = render(content.header, values, attributes), render(content.body, values, attributes)
    return Preview(
        audience=total,
        reachable=counts,
        left_out_by_max_inactivity_days=left_out,
        sample={"customer_id": sample_row["customer_id"], "header": header, "body": body},
        warnings=(
            journey_warnings(config=config, values=values)
            if config.steps
            else text_warnings(channels=config.channels, header=header, body=body)
        )
        + attribute_warnings(config=config),
        local_date=local_today(timezone_name=config.timezone, now=now).isoformat(),
        steps=steps,
    )
