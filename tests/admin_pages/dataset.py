"""A business as staff would see it in the admin: a three-step journey, a few weeks of runs, passes, devices,
failures with long provider errors, a split run and results. Every admin page has rows to show."""

import datetime as dt

from django.utils import timezone

from autoengagement.models import AutoEngagementConfig, RunPart
from autoengagement.services.config import config_upsert
from autoengagement.services.run import run_due_configs
from notifications.models import NotificationLog
from tests.factories import (
    AppleDeviceRegistrationFactory,
    BusinessFactory,
    BusinessSessionFactory,
    CustomerFactory,
    WalletPassFactory,
)
from wallet.models import WalletPass

JOURNEY = [
    {
        "after_days": 7,
        "message": {"header": "We miss you, {first_name}", "body": "Your favourite table at {business_name} waits."},
        "variants": [
            {"name": "friendly", "weight": 50},
            {"name": "offer", "weight": 50, "message": {"header": "20% off, {first_name}", "body": "Code BACK20"}},
        ],
    },
    {
        "after_days": 21,
        "message": {"header": "Still there?", "body": "{attributes.points|Your} points are waiting"},
        "email": {"subject": "Your points", "text": "You have {attributes.points|some} points", "html": "<p>Hi</p>"},
    },
    {"after_days": 45, "message": {"header": "Last call", "body": "One more coffee on us"}},
]
LONG_ERROR = (
    "HTTP 400 from https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json: "
    "code 21211, The 'To' number +33612345678 is not a valid phone number. More information: "
    "https://www.twilio.com/docs/errors/21211"
)


def admin_dataset() -> AutoEngagementConfig:
    now = timezone.now()
    business = BusinessFactory(
        name="Northside Coffee Roasters & Bakery of the Eleventh Arrondissement",
        email="owner.northside.coffee.roasters@example-hospitality-group.com",
        timezone="Europe/Paris",
    )
    BusinessSessionFactory(business=business)
    config, _ = config_upsert(
        business=business,
        data={"steps": JOURNEY, "channels": ["wallet", "email", "sms", "push"], "holdout_percent": 20},
    )
    for index in range(40):
        customer = CustomerFactory(
            business=business,
            first_name=f"Maximilian-Alexander{index}",
            last_name="Featherstonehaugh-Montgomery",
            email=f"maximilian.alexander.featherstonehaugh{index}@a-very-long-domain-name.example.com",
            push_token=f"fcm-{index:04d}-" + "x" * 120,
            attributes={"points": index * 10, "tier": "gold"},
            last_activity_at=now - dt.timedelta(days=8 + index),
            created_at=now - dt.timedelta(days=200),
        )
        wallet_pass = WalletPassFactory(
            customer=customer, platform=WalletPass.Platform.APPLE if index % 2 else WalletPass.Platform.GOOGLE
        )
        if index % 2:
            AppleDeviceRegistrationFactory(wallet_pass=wallet_pass)
    run_due_configs(now=now, business_ids=[business.business_id])
    for _ in range(6):  # quiet since the run: the preview has an audience
        CustomerFactory(
            business=business, last_activity_at=now - dt.timedelta(days=9), created_at=now - dt.timedelta(days=90)
        )
    NotificationLog.objects.filter(business=business, channel="sms").update(status="failed", error=LONG_ERROR)
    RunPart.objects.create(
        config=config,
        run_date=now.date(),
        number=1,
        first_customer=1,
        last_customer=10_000,
        owner="run-0123456789abcdef-host-worker-7",
        done_at=now,
        tally={"audience": 40, "notified": 32, "holdout": 8},
    )
    return config
