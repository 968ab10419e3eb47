"""The demo data set: one coffee shop with a few hundred customers who went quiet at different times."""

import datetime as dt
import logging
import random
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from autoengagement.models import AutoEngagementConfig
from engagement_site.secure_ids import IdKind, make_ids
from wallet.models import Business, Customer, WalletPass

logger = logging.getLogger(__name__)

DEMO_BUSINESS_ID = "biz_DemoCoffeeRoasters01"
DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"
DEMO_TIMEZONE = "Europe/Paris"
DEMO_CUSTOMERS = 300

FIRST_NAMES = [
    "Ana",
    "Ben",
    "Chloé",
    "Dmitri",
    "Emma",
    "Farid",
    "Grace",
    "Hiro",
    "Inès",
    "Jonas",
    "Kemi",
    "Lucas",
    "Maya",
    "Noah",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "",
    "Yuki",
    "Zoé",
]
LAST_NAMES = ["Martin", "Bernard", "Dubois", "Nguyen", "Okafor", "Rossi", "Schmidt", "Silva", "Tanaka", "Ward"]


@dataclass(frozen=True)
class DemoSeed:
    business: Business
    config: AutoEngagementConfig
    created: bool
    customers: int


def _days_since_last_visit(rng: random.Random) -> float | None:
    """A realistic spread: many recent regulars, a long tail of lapsed ones, some who never came back."""
    bucket = rng.random()
    if bucket < 0.35:
        return rng.uniform(0, 7)
    if bucket < 0.60:
        return rng.uniform(7, 30)
    if bucket < 0.80:
        return rng.uniform(30, 90)
    if bucket < 0.90:
        return rng.uniform(90, 400)
    return None


@transaction.atomic
def seed_demo(*, now: dt.datetime | None = None, customers: int = DEMO_CUSTOMERS) -> DemoSeed:
    """Create the demo business, its config and customers; running it again creates nothing."""
    existing = Business.objects.filter(business_id=DEMO_BUSINESS_ID).first()
    if existing is not None:
        config, _ = AutoEngagementConfig.objects.get_or_create(business=existing)
        return DemoSeed(existing, config, created=False, customers=existing.customers.count())

    now = now or timezone.now()
    rng = random.Random(2026)
    business = Business(
        business_id=DEMO_BUSINESS_ID, name="Demo Coffee Roasters", email=DEMO_EMAIL, timezone=DEMO_TIMEZONE
    )
    business.set_password(DEMO_PASSWORD)
    business.save()
    config = AutoEngagementConfig.objects.create(
        business=business,
        inactivity_days=14,
        channels=["wallet", "email", "sms"],
        run_time="09:00",
        timezone=DEMO_TIMEZONE,
        message_template={
            "header": "We miss you, {first_name}!",
            "body": "It's been {days_inactive} days. Your next coffee at {business_name} is on us this week.",
        },
    )

    rows = []
    for index, customer_id in enumerate(make_ids(IdKind.CUSTOMER, customers)):
        days_quiet = _days_since_last_visit(rng)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        last_activity = None if days_quiet is None else now - dt.timedelta(days=days_quiet)
        created = (last_activity or now - dt.timedelta(days=rng.uniform(15, 60))) - dt.timedelta(
            days=rng.uniform(0, 300)
        )
        rows.append(
            Customer(
                customer_id=customer_id,
                business=business,
                first_name=first,
                last_name=last,
                email=f"customer{index}@example.com" if rng.random() < 0.85 else "",
                phone=f"+3361234{index:04d}" if rng.random() < 0.6 else "",
                push_token=f"demo-push-token-{index}" if rng.random() < 0.3 else "",
                email_opt_out=rng.random() < 0.05,
                sms_opt_out=rng.random() < 0.05,
                created_at=created,
                last_activity_at=last_activity,
            )
        )
    created_customers = Customer.objects.bulk_create(rows)

    with_pass = [customer for customer in created_customers if rng.random() < 0.7]
    WalletPass.objects.bulk_create(
        WalletPass(pass_id=pass_id, customer=customer, platform="apple" if rng.random() < 0.6 else "google")
        for pass_id, customer in zip(make_ids(IdKind.PASS, len(with_pass)), with_pass, strict=True)
    )
    logger.info("demo seeded", extra={"business_id": business.business_id, "customers": len(rows)})
    return DemoSeed(business, config, created=True, customers=len(rows))
