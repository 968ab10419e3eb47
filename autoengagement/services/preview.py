"""What a run would do right now: audience (and by journey step), reach per channel, a rendered sample and text
warnings."""

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Count, Exists, OuterRef, Q

from autoengagement.journeys import Step, variant_for
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


@dataclass(frozen=True)
class Preview:
    audience: int
    reachable: dict[str, int]
    left_out_by_max_inactivity_days: int
    sample: dict[str, str] | None
    warnings: list[dict[str, str]] = field(default_factory=list)
    local_date: str = ""
    # The audience by the step due to each customer (the step's number, as text), every step of the journey listed.
    steps: dict[str, int] = field(default_factory=dict)


def _reachable_condition(channel: str) -> Q:
    if channel == Channel.WALLET:
        return Q(has_wallet_pass=True)
    return consent.sendable_q(channel=channel)


def text_warnings(*, channels: list[str], header: str, body: str) -> list[dict[str, str]]:
    """Where the rendered text is longer than the channel shows at once."""
    warnings = []
    for channel in channels:
        if channel in (Channel.WALLET, Channel.PUSH) and len(body) > LOCK_SCREEN_CHARACTERS:
            warnings.append(
                {
                    "channel": channel,
                    "message": f"The body has {len(body)} characters; a lock screen shows about "
                    f"{LOCK_SCREEN_CHARACTERS}, the rest is cut off.",
                }
            )
        if channel == Channel.SMS:
            # The text exactly as the SMS backend sends it: header, a newline, then the body (the body alone when the
            # header is empty, as for a step's own SMS text).
            size = sms_size(f"{header}\n{body}" if header else body)
            if size.segments > 1:
                limit = (
                    "160 GSM-7 characters" if size.encoding == "GSM-7" else "70 characters (it has non-GSM characters)"
                )
                warnings.append(
                    {
                        "channel": channel,
                        "message": f"Header and body need {size.segments} SMS segments; one segment holds {limit}.",
                    }
                )
    return warnings


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
    if config.steps:
        warnings = _journey_warnings(journey, channels=config.channels, values=values, attributes=attributes)
    else:
        warnings = text_warnings(channels=config.channels, header=header, body=body)
    return Preview(
        audience=total,
        reachable=counts,
        left_out_by_max_inactivity_days=left_out,
        sample={"customer_id": sample_row["customer_id"], "header": header, "body": body},
        warnings=warnings,
        local_date=local_today(timezone_name=config.timezone, now=now).isoformat(),
        steps=steps,
    )


def _journey_warnings(
    journey: tuple[Step, ...], *, channels: list[str], values: dict[str, object], attributes: dict[str, object]
) -> list[dict[str, str]]:
    """text_warnings for each step's and variant's own content on each channel, each message saying where."""
    warnings = []
    for step in journey:
        for variant in step.variants:
            where = f"Step {step.number}" + (f", variant {variant.name}" if variant.name else "")
            for channel in channels:
                content = variant.content(channel)
                warnings.extend(
                    {"channel": warning["channel"], "message": f"{where}: {warning['message']}"}
                    for warning in text_warnings(
                        channels=[channel],
                        header=render(content.header, values, attributes),
                        body=render(content.body, values, attributes),
                    )
                )
    return warnings
