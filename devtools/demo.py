"""The demo data set: one coffee shop with a few hundred customers, a three-step journey whose first step is split
into two variants, and optionally a few simulated weeks of daily runs and visits so the results (stats API, admin
results page, `engagement_stats`) show real numbers: one variant visibly brings more customers back.

Deterministic: everything random (names, channels, attributes, every date, the customers', passes' and config's
IDs, and every simulated visit) comes from one seeded generator, and the instants that start spells are chosen so
that the run's own holdout and variant draws, which hash them, come out as seeded draws say (below). So the same
seed and customer count tell the same story, figure for figure, on every fresh database and any day.
"""

import datetime as dt
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from autoengagement.journeys import Step, journey_of, mirrored_fields, steps_errors, variant_for
from autoengagement.models import AutoEngagementConfig
from autoengagement.services.audience import in_holdout
from autoengagement.services.run import run_due_configs
from engagement_site.secure_ids import ALPHABET, RANDOM_LENGTH, IdKind
from notifications.models import NotificationLog
from wallet.models import Business, Customer, WalletPass
from wallet.services import record_visits

logger = logging.getLogger(__name__)

DEMO_BUSINESS_ID = "biz_DemoCoffeeRoasters01"
DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"
DEMO_TIMEZONE = "Europe/Paris"
DEMO_SEED = 2026
DEMO_CUSTOMERS = 600
DEMO_HOLDOUT_PERCENT = 20
DEMO_ATTRIBUTION_DAYS = 14
DEMO_MAX_INACTIVITY_DAYS = 180
DEMO_CHANNELS = ["wallet", "email", "sms", "push"]

# The journey: a nudge after 14 quiet days (a friendly note or an offer, half the customers each), 20% off after
# 30, a last call after 60. Each channel gets content of its own where it shows what a journey can do.
DEMO_STEPS: list[dict[str, Any]] = [
    {
        "after_days": 14,
        "message": {
            "header": "We miss you, {first_name}!",
            "body": "It's been {days_inactive} days. Your {attributes.points|loyalty} points are waiting at "
            "{business_name}.",
        },
        "email": {
            "subject": "{first_name}, your {attributes.points|loyalty} points miss you",
            "text": "It's been {days_inactive} days since your last coffee at {business_name}. Your "
            "{attributes.points|loyalty} points are waiting, and so is your {attributes.favourite|usual}.",
            "html": "<html><body><h1>We miss you, {first_name}</h1><p>It's been {days_inactive} days. Your "
            "<strong>{attributes.points|loyalty} points</strong> are waiting at {business_name}, and so is your "
            "{attributes.favourite|usual}.</p></body></html>",
        },
        "sms": {"text": "{business_name}: {attributes.points|your} points are waiting, {first_name}. See you soon?"},
        "push": {"title": "We miss you, {first_name}", "body": "Your {attributes.favourite|usual} is one tap away."},
        "variants": [
            {"name": "friendly", "weight": 50},
            {
                "name": "offer",
                "weight": 50,
                "message": {
                    "header": "A free pastry, {first_name}",
                    "body": "With your next coffee at {business_name} this week. Just show this pass.",
                },
                "email": {
                    "subject": "{first_name}, a free pastry with your next coffee",
                    "text": "Come by {business_name} this week: a free pastry with any coffee, and "
                    "{attributes.points|your} points on top.",
                    "html": "<html><body><h1>A free pastry, {first_name}</h1><p>With any coffee at {business_name} "
                    "this week, and <strong>{attributes.points|your} points</strong> on top.</p></body></html>",
                },
                "sms": {"text": "{business_name}: a free pastry with your next coffee this week, {first_name}."},
                "push": {"title": "A free pastry this week", "body": "With any coffee, {first_name}."},
            },
        ],
    },
    {
        "after_days": 30,
        "message": {
            "header": "20% off, {first_name}",
            "body": "20% off your next order at {business_name}, this week only.",
        },
        "sms": {"text": "{business_name}: 20% off your next order this week, {first_name}."},
    },
    {
        "after_days": 60,
        "message": {
            "header": "Last call, {first_name}",
            "body": "Your {attributes.points|loyalty} points at {business_name} expire at the end of the month.",
        },
        "email": {
            "subject": "Last call: your {attributes.points|loyalty} points expire soon",
            "text": "Your {attributes.points|loyalty} points at {business_name} expire at the end of the month.",
        },
    },
]

# The story the simulation tells: the chance that a customer comes back within 12 days of a step's turn, by step
# and variant (None: held out, who get nothing). The offer clearly beats the friendly note.
COME_BACK: dict[tuple[int, str] | None, float] = {
    (1, "friendly"): 0.15,
    (1, "offer"): 0.38,
    (2, ""): 0.22,
    (3, ""): 0.15,
    None: 0.06,
}

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
FAVOURITES = ["flat white", "cappuccino", "espresso", "chai latte", "filter coffee"]


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


# Seeded dates. Every instant the demo makes is `now` minus a whole number of days minus 0.1 to 0.9 of a day, and
# each simulated run is at `now` minus a whole number of days: so a customer crosses a step's after_days between
# two runs, never within the first 2.4 hours after `now`. The dry run, today's run and the rerun that follow the
# seeding see the same audience whenever they run in those hours.
#
# Seeded draws. The run draws a customer's holdout and variant from a hash of the config, the customer and the
# instant their spell started (autoengagement.services.audience.in_holdout, journeys.variant_for), so with dates
# relative to `now` the figures would change with the day the demo runs. Each instant that starts a spell (a visit,
# a never-seen customer's creation) is therefore moved on by the few seconds it takes for the run's own draws to
# come out as a seeded draw says (`_Draws.fit`): the run still decides, and decides the same on every day.


def _days_ago(now: dt.datetime, days: int, rng: random.Random) -> dt.datetime:
    """An instant `days` + 0.1 to 0.9 days before `now`."""
    return now - dt.timedelta(days=days + rng.uniform(0.1, 0.9))


def _seeded_ids(kind: IdKind, count: int, rng: random.Random) -> list[str]:
    """`count` distinct IDs of one kind, from `rng` (secure_ids' alphabet and length, not its CSPRNG)."""
    ids: dict[str, None] = {}
    while len(ids) < count:
        ids[kind.prefix + "".join(rng.choices(ALPHABET, k=RANDOM_LENGTH))] = None
    return list(ids)


@dataclass(frozen=True)
class _Draws:
    config_id: str
    rng: random.Random
    first_step: Step

    def fit(self, at: dt.datetime, customer_id: str) -> dt.datetime:
        """`at` (to the second), or the first second after it at which a spell starting then is held out or not,
        and reached with the first step's variant, as a seeded draw with the config's odds says."""
        held_out = self.rng.randrange(100) < DEMO_HOLDOUT_PERCENT
        variants = self.first_step.variants
        variant = self.rng.choices([v.name for v in variants], weights=[v.weight for v in variants])[0]
        at = at.replace(microsecond=0)
        while not self._draws_are(at, customer_id, held_out, variant):
            at += dt.timedelta(seconds=1)
        return at

    def _draws_are(self, at: dt.datetime, customer_id: str, held_out: bool, variant: str) -> bool:
        ids = {"config_id": self.config_id, "customer_id": customer_id, "spell_start": at}
        if in_holdout(**ids, holdout_percent=DEMO_HOLDOUT_PERCENT) != held_out:
            return False
        return held_out or variant_for(self.first_step, **ids).name == variant


@dataclass(frozen=True)
class _Plan:
    """One customer's history as of `start` (last visit, or creation when never seen) and visits to come."""

    last_visit: dt.datetime | None
    created: dt.datetime
    visits: tuple[dt.datetime, ...] = ()


# The customers, by what they do: most groups are a share of them; three are arranged for today's run, their last
# visit 14, 30 and 60 days ago, so that today's run (after the simulated days) owes each of them a step.
GROUPS = [
    ("step 1 today", 0.06),
    ("step 2 today", 0.07),
    ("step 3 today", 0.06),
    ("regular", 0.22),
    ("regular who stops", 0.22),
    ("quiet at start", 0.27),
    ("long quiet", 0.03),
    ("lapsed beyond the limit", 0.04),
    ("never seen", 0.03),
]


def _groups(customers: int, rng: random.Random) -> list[str]:
    """Each customer's group, in a seeded order (the counts rounded, the rest going to the regulars)."""
    counts = [round(customers * share) for _, share in GROUPS]
    counts[3] += customers - sum(counts)
    groups = [name for (name, _), count in zip(GROUPS, counts, strict=True) for _ in range(count)]
    rng.shuffle(groups)
    return groups


def _plan(group: str, *, now: dt.datetime, start_days: int, rng: random.Random, fit: Callable) -> _Plan:
    """A customer of `group`'s history, `start_days` days of simulation ahead. `fit` seeds a spell's draws."""
    if group in ("step 1 today", "step 2 today", "step 3 today"):
        quiet_days = {"step 1 today": 14, "step 2 today": 30, "step 3 today": 60}[group]
    elif group == "regular":
        quiet_days = 0
    elif group == "regular who stops":
        quiet_days = rng.randint(15, max(15, start_days - 1))
    elif group == "long quiet":
        quiet_days = rng.randint(61, DEMO_MAX_INACTIVITY_DAYS - 1)
    elif group == "lapsed beyond the limit":
        quiet_days = rng.randint(DEMO_MAX_INACTIVITY_DAYS + 1, 400)
    else:  # quiet at start, never seen: 2 to 29 days before `start`
        quiet_days = rng.randint(start_days + 2, start_days + 29)
    if group == "never seen":
        return _Plan(None, fit(_days_ago(now, quiet_days, rng)))
    visits = [fit(_days_ago(now, quiet_days, rng))]
    if group in ("step 1 today", "regular", "regular who stops"):
        # A regular comes by every 2 to 6 days until `quiet_days` ago: the visits before `start` are history.
        days = quiet_days
        while days < start_days:
            days += rng.randint(2, 6)
            visits.append(fit(_days_ago(now, days, rng)))
    visits.reverse()
    return _Plan(visits[0], visits[0] - dt.timedelta(days=rng.uniform(30, 300)), tuple(visits[1:]))


def seed_demo(
    *,
    now: dt.datetime | None = None,
    customers: int = DEMO_CUSTOMERS,
    simulate_days: int = 0,
    seed: int = DEMO_SEED,
) -> DemoSeed:
    """Create the demo business, its journey and customers; running it again creates nothing.

    With `simulate_days`, the customers are created as of that many days ago and the days up to yesterday are
    played through the real services: the daily run on each simulated day (run_due_configs with that `now`, the
    channels' configured backends) and visits recorded with record_visits, regulars coming by every few days and
    re-engaged customers coming back with a chance that depends on the step and variant they received
    (COME_BACK). Today's run is left to the caller (`make demo` does it). The same `seed` and `customers` give the
    same figures, whatever the day.
    """
    now = now or timezone.now()
    existing = Business.objects.filter(business_id=DEMO_BUSINESS_ID).first()
    if existing is not None:
        config, _ = AutoEngagementConfig.objects.get_or_create(business=existing)
        return DemoSeed(existing, config, created=False, customers=existing.customers.count())
    rng = random.Random(seed)
    config_id = _seeded_ids(IdKind.CONFIG, 1, rng)[0]
    draws = _Draws(config_id, rng, journey_of(steps=DEMO_STEPS, message_template={}, inactivity_days=0)[0])
    customer_ids = _seeded_ids(IdKind.CUSTOMER, customers, rng)
    plans = [
        _plan(
            group,
            now=now,
            start_days=simulate_days,
            rng=rng,
            fit=lambda at, customer_id=customer_id: draws.fit(at, customer_id),
        )
        for group, customer_id in zip(_groups(customers, rng), customer_ids, strict=True)
    ]
    start = now - dt.timedelta(days=simulate_days)
    business, config, customer_pks = _seed(config_id=config_id, customer_ids=customer_ids, plans=plans, rng=rng)
    seeded = DemoSeed(business, config, created=True, customers=customers)
    if simulate_days <= 0:
        return seeded
    visits = sorted((at, pk) for pk, plan in zip(customer_pks, plans, strict=True) for at in plan.visits)
    customer_id_of = dict(zip(customer_pks, customer_ids, strict=True))
    simulation = simulate_weeks(
        business=business,
        start=start,
        days=simulate_days,
        visits=visits,
        rng=rng,
        fit=lambda at, pk: draws.fit(at, customer_id_of[pk]),
    )
    return DemoSeed(business, config, created=True, customers=customers, simulation=simulation)


@transaction.atomic
def _seed(
    *, config_id: str, customer_ids: list[str], plans: list[_Plan], rng: random.Random
) -> tuple[Business, AutoEngagementConfig, list[int]]:
    """The business, its config and the customers as they were at the start; the customers' primary keys."""
    business = Business(
        business_id=DEMO_BUSINESS_ID, name="Demo Coffee Roasters", email=DEMO_EMAIL, timezone=DEMO_TIMEZONE
    )
    business.set_password(DEMO_PASSWORD)
    business.save()
    assert not steps_errors(DEMO_STEPS), steps_errors(DEMO_STEPS)
    config = AutoEngagementConfig.objects.create(
        config_id=config_id,
        business=business,
        steps=DEMO_STEPS,
        **mirrored_fields(DEMO_STEPS),
        channels=DEMO_CHANNELS,
        max_inactivity_days=DEMO_MAX_INACTIVITY_DAYS,
        holdout_percent=DEMO_HOLDOUT_PERCENT,
        attribution_days=DEMO_ATTRIBUTION_DAYS,
        run_time="09:00",
        timezone=DEMO_TIMEZONE,
    )

    rows = []
    for index, (customer_id, plan) in enumerate(zip(customer_ids, plans, strict=True)):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
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
                attributes=_attributes(rng),
                created_at=plan.created,
                last_activity_at=plan.last_visit,
            )
        )
    created_customers = Customer.objects.bulk_create(rows)

    with_pass = [customer for customer in created_customers if rng.random() < 0.7]
    WalletPass.objects.bulk_create(
        WalletPass(pass_id=pass_id, customer=customer, platform="apple" if rng.random() < 0.6 else "google")
        for pass_id, customer in zip(_seeded_ids(IdKind.PASS, len(with_pass), rng), with_pass, strict=True)
    )
    logger.info("demo seeded", extra={"business_id": business.business_id, "customers": len(rows)})
    return business, config, [customer.pk for customer in created_customers]


def _attributes(rng: random.Random) -> dict[str, Any]:
    """A points balance and a favourite drink for most customers; some have neither (the templates' fallbacks)."""
    if rng.random() < 0.15:
        return {}
    return {"points": rng.randrange(20, 500, 10), "favourite": rng.choice(FAVOURITES)}


def simulate_weeks(
    *,
    business: Business,
    start: dt.datetime,
    days: int,
    visits: list[tuple[dt.datetime, int]],
    rng: random.Random,
    fit: Callable[[dt.datetime, int], dt.datetime],
) -> Simulation:
    """Play `days` - 1 days after `start` through the real run and visit services (today is left to the caller).

    Each simulated day: the visits that happened since the previous day (`visits`: (instant, customer pk), the
    regulars' and those of earlier days' returns) are recorded in one bulk call, then the daily run reaches whoever
    is due. The run's own rows say what each customer got (reached or held out, which step and variant); each comes
    back 1 to 12 days later with that step and variant's chance (COME_BACK), at an instant `fit` seeds the draws of.
    """
    pending = list(visits)
    reached = holdout = recorded = runs = 0
    for day in range(1, days + 1):
        day_now = start + dt.timedelta(days=day)
        due = sorted(visit for visit in pending if visit[0] < day_now)
        pending = [visit for visit in pending if visit[0] >= day_now]
        if due:
            record_visits(business=business, visits=[(pk, at) for at, pk in due], now=day_now)
            recorded += len(due)
        if day == days:
            break  # today: the caller's run
        run_due_configs(now=day_now, business_ids=[business.business_id])
        runs += 1
        for customer_pk, turn in sorted(_turns(business, day_now).items()):
            if turn is None:
                holdout += 1
            else:
                reached += 1
            if rng.random() < COME_BACK.get(turn, 0.0):
                back = day_now + dt.timedelta(days=rng.randint(1, 12) - rng.uniform(0.1, 0.9))
                pending.append((fit(back, customer_pk), customer_pk))
    logger.info(
        "demo weeks simulated",
        extra={"business_id": business.business_id, "days": days, "reached": reached, "holdout": holdout},
    )
    return Simulation(days=days, runs=runs, reached=reached, holdout=holdout, visits=recorded)


def _turns(business: Business, at: dt.datetime) -> Mapping[int, tuple[int, str] | None]:
    """What the run at `at` did to each customer it wrote rows for: (step, variant) when a channel sent, None when
    held out. Customers whose every channel was skipped or failed are left out: nothing reached them."""
    turns: dict[int, tuple[int, str] | None] = {}
    rows = NotificationLog.objects.filter(business=business, created_at=at).values_list(
        "customer_id", "status", "step", "variant"
    )
    for customer_pk, status, step, variant in rows:
        if status == NotificationLog.Status.SENT:
            turns[customer_pk] = (step, variant)
        elif status == NotificationLog.Status.HOLDOUT:
            turns.setdefault(customer_pk, None)
    return turns
