"""The demo data set: one coffee shop with a few hundred customers who went quiet at different times, and
optionally a few simulated weeks of daily runs and visits so the results (stats API, admin results page) show
real numbers."""

import datetime as dt
import logging
import random
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from autoengagement.models import AutoEngagementConfig
from autoengagement.services.run import run_due_configs
from engagement_site.secure_ids import IdKind, make_ids
from notifications.models import NotificationLog
from wallet.models import Business, Customer, WalletPass
from wallet.services import record_visits

logger = logging.getLogger(__name__)

DEMO_BUSINESS_ID = "biz_DemoCoffeeRoasters01"
DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"
DEMO_TIMEZONE = "Europe/Paris"
DEMO_CUSTOMERS = 300
DEMO_HOLDOUT_PERCENT = 20
DEMO_ATTRIBUTION_DAYS = 14
# The story the simulation tells: a message brings back more customers than silence does.
COME_BACK_REACHED = 0.45
COME_BACK_HOLDOUT = 0.15

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
class Simulation:
    days: int
    runs: int
    reached: int
    holdout: int
    visits: int


@dataclass(frozen=True)
class DemoSeed:
    business: Business
    config: AutoEngagementConfig
    created: bool
    customers: int
    simulation: Simulation | None = None


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


def seed_demo(*, now: dt.datetime | None = None, customers: int = DEMO_CUSTOMERS, simulate_days: int = 0) -> DemoSeed:
    """Create the demo business, its config and customers; running it again creates nothing.

    With `simulate_days`, the customers are created as of that many days ago and the days up to yesterday are
    played through the real services: the daily run on each simulated day (run_due_configs with that `now`) and
    visits recorded with record_visits, regulars coming by every few days and re-engaged customers coming back
    (more often when reached than when held out). Today's run is left to the caller (`make demo` does it).
    """
    now = now or timezone.now()
    existing = Business.objects.filter(business_id=DEMO_BUSINESS_ID).first()
    if existing is not None:
        config, _ = AutoEngagementConfig.objects.get_or_create(business=existing)
        return DemoSeed(existing, config, created=False, customers=existing.customers.count())
    start = now - dt.timedelta(days=simulate_days)
    seed = _seed(now=start, customers=customers)
    if simulate_days <= 0:
        return seed
    simulation = simulate_weeks(business=seed.business, start=start, days=simulate_days)
    return DemoSeed(seed.business, seed.config, created=True, customers=seed.customers, simulation=simulation)


@transaction.atomic
def _seed(*, now: dt.datetime, customers: int) -> DemoSeed:
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
        holdout_percent=DEMO_HOLDOUT_PERCENT,
        attribution_days=DEMO_ATTRIBUTION_DAYS,
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


def simulate_weeks(*, business: Business, start: dt.datetime, days: int) -> Simulation:
    """Play `days` - 1 days after `start` through the real run and visit services (today is left to the caller).

    Each simulated day: the visits that happened since the previous day are recorded in one bulk call, then the
    daily run reaches whoever is due; each customer it re-engaged comes back within 12 days with probability
    COME_BACK_REACHED (reached) or COME_BACK_HOLDOUT (held out). Regulars (last visit within a week of `start`)
    come by every 2 to 6 days throughout. Deterministic: the same seed gives the same story.
    """
    rng = random.Random(1998)
    pending: list[tuple[dt.datetime, int]] = []
    regulars = Customer.objects.filter(business=business, last_activity_at__gte=start - dt.timedelta(days=7))
    end = start + dt.timedelta(days=days)
    for pk, last_visit in regulars.values_list("pk", "last_activity_at"):
        at = last_visit + dt.timedelta(days=rng.uniform(2, 6))
        while at < end:
            pending.append((at, pk))
            at += dt.timedelta(days=rng.uniform(2, 6))
    reached = holdout = visits = runs = 0
    for day in range(1, days):
        day_now = start + dt.timedelta(days=day)
        due = sorted(visit for visit in pending if visit[0] < day_now)
        pending = [visit for visit in pending if visit[0] >= day_now]
        if due:
            record_visits(business=business, visits=[(pk, at) for at, pk in due], now=day_now)
            visits += len(due)
        run_due_configs(now=day_now, business_ids=[business.business_id])
        runs += 1
        today = NotificationLog.objects.filter(business=business, created_at=day_now).values_list(
            "customer_id", "status"
        )
        groups: dict[int, str] = {}
        for customer_pk, status in today:
            if status == NotificationLog.Status.SENT or groups.get(customer_pk) != NotificationLog.Status.SENT:
                groups[customer_pk] = status
        for customer_pk, status in sorted(groups.items()):
            if status == NotificationLog.Status.SENT:
                reached += 1
                chance = COME_BACK_REACHED
            elif status == NotificationLog.Status.HOLDOUT:
                holdout += 1
                chance = COME_BACK_HOLDOUT
            else:
                continue
            if rng.random() < chance:
                pending.append((day_now + dt.timedelta(days=rng.uniform(0.2, 12)), customer_pk))
    last = start + dt.timedelta(days=days)
    due = sorted(visit for visit in pending if visit[0] < last)
    if due:
        record_visits(business=business, visits=[(pk, at) for at, pk in due], now=last)
        visits += len(due)
    logger.info(
        "demo weeks simulated",
        extra={"business_id": business.business_id, "days": days, "reached": reached, "holdout": holdout},
    )
    return Simulation(days=days, runs=runs, reached=reached, holdout=holdout, visits=visits)
