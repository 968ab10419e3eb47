"""What a run would do right now: audience, reach per channel, a rendered sample and text warnings."""

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Count, Exists, OuterRef, Q

from autoengagement.models import AutoEngagementConfig
from autoengagement.services.audience import audience_queryset, quiet_since_expression
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
            # The text exactly as the SMS backend sends it: header, a newline, then the body.
            size = sms_size(f"{header}\n{body}")
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
    """A few aggregate queries, whatever the number of customers; writes and sends nothing."""
    audience = audience_queryset(config=config, now=now).annotate(
        has_wallet_pass=Exists(WalletPass.objects.filter(customer_id=OuterRef("pk")))
    )
    counts = audience.aggregate(
        total=Count("pk"),
        **{channel: Count("pk", filter=_reachable_condition(channel)) for channel in config.channels},
    )
    left_out = 0
    if config.max_inactivity_days is not None:
        left_out = (
            Customer.objects.filter(business_id=config.business_id)
            .annotate(quiet_since=quiet_since_expression())
            .filter(quiet_since__lt=now - dt.timedelta(days=config.max_inactivity_days))
            .count()
        )
    template = config.get_message_template()
    sample_row = audience.order_by("pk").values("customer_id", "first_name", "quiet_since").first()
    if sample_row is None:
        sample_row = {
            "customer_id": "",
            "first_name": "",
            "quiet_since": now - dt.timedelta(days=config.inactivity_days),
        }
    values = {
        "first_name": sample_row["first_name"] or FIRST_NAME_FALLBACK,
        "business_name": config.business.name,
        "days_inactive": max((now - sample_row["quiet_since"]).days, 0),
    }
    header, body = render(template["header"], values), render(template["body"], values)
    return Preview(
        audience=counts.pop("total"),
        reachable=counts,
        left_out_by_max_inactivity_days=left_out,
        sample={"customer_id": sample_row["customer_id"], "header": header, "body": body},
        warnings=text_warnings(channels=config.channels, header=header, body=body),
        local_date=local_today(timezone_name=config.timezone, now=now).isoformat(),
    )
