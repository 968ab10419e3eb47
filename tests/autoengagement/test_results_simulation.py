"""Randomised simulation: the real run / visit / delivery / recovery services over many days, the stats compared
with the reference count of the raw log after every day, as they are, with every day stale, and fully rebuilt."""

import datetime as dt
import random

import pytest
from django.db import transaction

from autoengagement.models import AutoEngagementConfig, ResultsDay
from autoengagement.services import results
from autoengagement.services.receipts import record_delivery
from autoengagement.services.run import run_due_configs
from notifications.backends.base import ChannelBackend, Result
from notifications.models import NotificationLog
from tests.autoengagement.reference import computed_stats, reference_stats
from tests.factories import AutoEngagementConfigFactory, BusinessFactory, CustomerFactory, WalletPassFactory
from wallet.models import WalletPass
from wallet.services import record_visits

pytestmark = pytest.mark.django_db


class Crash(BaseException):
    """The process dies (SIGKILL-like): nothing after it runs."""


CRASH = {"armed": False}
HOOK = {"fn": None}


def _step(after_days, *variants):
    step = {"after_days": after_days, "message": {"header": f"Day {after_days}", "body": "Come back, {first_name}"}}
    if variants:
        step["variants"] = [
            {"name": name, "weight": weight, "message": {"header": f"{name} {after_days}", "body": "Hi"}}
            for name, weight in variants
        ]
    return step


# The journeys the configs follow: the run itself gives each row its step and variant.
JOURNEYS = [
    None,
    [_step(2, ("A", 50), ("B", 50)), _step(4)],
    [_step(2), _step(3, ("C", 30), ("D", 30), ("E", 40)), _step(5)],
]


class CrashableBackend(ChannelBackend):
    def __init__(self, channel: str = "") -> None:
        self.channel = channel

    def send_batch(self, messages):
        if CRASH["armed"]:
            CRASH["armed"] = False
            raise Crash()
        out = []
        for m in messages:
            r = random.random()
            status = "sent" if r < 0.85 else "failed"
            out.append(
                Result(
                    log_id=m.log_id,
                    status=status,
                    provider_message_id=f"p-{m.log_id}" if status == "sent" else "",
                    error="" if status == "sent" else "boom",
                )
            )
        if HOOK["fn"]:
            HOOK["fn"]()
        return out


ZONES = ["America/New_York", "Asia/Kolkata", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/Paris", "UTC"]
START = dt.datetime(2026, 3, 1, 0, 0, tzinfo=dt.UTC)
SIMULATED_DAYS = 20


def _new_config(rng, business, steps):
    if steps:
        seed_fields = {"inactivity_days": steps[0]["after_days"], "max_reminders": len(steps)}
    else:
        seed_fields = {"inactivity_days": rng.choice([2, 3, 4]), "max_reminders": rng.choice([1, 2, 3])}
    return AutoEngagementConfigFactory(
        business=business,
        steps=steps,
        **seed_fields,
        channels=rng.choice([["wallet", "email", "sms"], ["wallet", "sms"], ["email", "wallet"]]),
        holdout_percent=rng.choice([0, 20, 40]),
        attribution_days=rng.choice([2, 5, 10]),
        run_time=f"{rng.randrange(24):02d}:{rng.choice(['00', '30'])}",
        timezone=rng.choice(ZONES),
    )


def _check(businesses, first_date, last_date, rng, label):
    windows = [
        (first_date, last_date),
        (last_date, last_date),
        (last_date - dt.timedelta(days=6), last_date),
        (first_date + dt.timedelta(days=3), last_date - dt.timedelta(days=2)),
    ]
    for _ in range(3):
        a = first_date + dt.timedelta(days=rng.randrange(-2, (last_date - first_date).days + 3))
        b = a + dt.timedelta(days=rng.randrange(0, 15))
        windows.append((a, b))
    for date_from, date_to in windows:
        if date_from > date_to:
            continue
        for business in [*businesses, None]:
            got = computed_stats(business, date_from, date_to)
            want = reference_stats(business, date_from, date_to)
            assert got == want, (label, business and business.pk, date_from, date_to, got, want)


def _check_all_states(businesses, first_date, last_date, rng, label):
    _check(businesses, first_date, last_date, rng, label + " as is")
    with transaction.atomic():
        ResultsDay.objects.update(stale=True)
        _check(businesses, first_date, last_date, rng, label + " all stale")
        transaction.set_rollback(True)
    with transaction.atomic():
        results.rebuild_results()
        _check(businesses, first_date, last_date, rng, label + " rebuilt")
        transaction.set_rollback(True)
    with transaction.atomic():
        # a random half of the days refreshed, the rest stale
        for business in businesses:
            days = list(
                ResultsDay.objects.filter(business=business).order_by("run_date").values_list("run_date", flat=True)
            )
            ResultsDay.objects.filter(business=business).update(stale=True)
            results.refresh_days(business_id=business.pk, run_dates=[d for d in days if rng.random() < 0.5])
        _check(businesses, first_date, last_date, rng, label + " half")
        transaction.set_rollback(True)


@pytest.mark.parametrize("seed", [1])
def test_simulated_days_match_the_reference(settings, seed):
    rng = random.Random(seed)
    random.seed(seed)
    for name in ("WALLET_CHANNEL", "EMAIL_CHANNEL", "SMS_CHANNEL"):
        setattr(settings, name, f"{__name__}.CrashableBackend")
    settings.AUTO_ENGAGEMENT_CHUNK_SIZE = 7
    businesses = [BusinessFactory(timezone=rng.choice(ZONES)) for _ in range(3)]
    customers: dict[int, list[int]] = {}
    for business, steps in zip(businesses, JOURNEYS, strict=True):
        people = []
        for _ in range(30):
            quiet = rng.uniform(0, 20)
            c = CustomerFactory(
                business=business,
                created_at=START - dt.timedelta(days=60),
                last_activity_at=None if rng.random() < 0.1 else START - dt.timedelta(days=quiet),
            )
            if rng.random() < 0.7:
                WalletPassFactory(customer=c)
            people.append(c.pk)
        customers[business.pk] = people
        _new_config(rng, business, steps)

    def visits(business, now, *, backdate_days=3.0, chance=0.12):
        batch = []
        for pk in customers[business.pk]:
            if rng.random() < chance:
                batch.append((pk, now - dt.timedelta(days=rng.uniform(0, backdate_days))))
                if rng.random() < 0.3:
                    batch.append((pk, now - dt.timedelta(hours=rng.uniform(0, 30))))
        if batch:
            record_visits(business=business, visits=batch, now=now)

    def deliveries(business, chance=0.2):
        # In key order: each pass's draw must not depend on the order the database returns rows in.
        passes = WalletPass.objects.filter(customer__business=business).order_by("pk")
        for wallet_pass in passes:
            if rng.random() < chance:
                wallet_pass.message_text = "hello"
                wallet_pass.save()
                record_delivery(wallet_pass=wallet_pass)

    state = {"now": START}

    def mid_run():
        if rng.random() < 0.15:
            last = (state["now"] + dt.timedelta(days=1)).date()
            _check(businesses, first_date, last, rng, f"mid-run {state['now']}")
        if rng.random() < 0.3:
            business = rng.choice(businesses)
            visits(business, state["now"] + dt.timedelta(minutes=5), backdate_days=1, chance=0.1)
        if rng.random() < 0.3:
            deliveries(rng.choice(businesses), chance=0.1)

    HOOK["fn"] = mid_run
    first_date = (START - dt.timedelta(days=1)).date()
    try:
        for day in range(SIMULATED_DAYS):
            for hour in range(0, 24, 2):
                now = START + dt.timedelta(days=day, hours=hour, minutes=rng.randrange(0, 60))
                state["now"] = now
                for business in businesses:
                    if rng.random() < 0.3:
                        visits(business, now)
                    if rng.random() < 0.2:
                        deliveries(business)
                CRASH["armed"] = rng.random() < 0.04
                try:
                    if rng.random() < 0.05:
                        business = rng.choice(businesses)
                        run_due_configs(now=now, business_ids=[business.business_id])
                    else:
                        run_due_configs(now=now)
                except Crash:
                    # the lease of the crashed run runs out (wall clock)
                    AutoEngagementConfig.objects.filter(last_run_status="running").update(
                        lease_expires_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
                    )
                CRASH["armed"] = False
                if rng.random() < 0.01:
                    business = rng.choice(businesses)
                    AutoEngagementConfig.objects.filter(business=business).delete()
                    _new_config(rng, business, rng.choice(JOURNEYS))
            last_date = (START + dt.timedelta(days=day + 1)).date()
            if day % 5 == 4:  # every state is slow to check: every fifth day, the stats as they are every day
                _check_all_states(businesses, first_date, last_date, rng, f"day {day}")
            else:
                _check(businesses, first_date, last_date, rng, f"day {day}")
        assert NotificationLog.objects.exclude(reactivated_at=None).exists()
        assert NotificationLog.objects.exclude(delivered_at=None).exists()
        reactivated = NotificationLog.objects.exclude(reactivated_at=None).values_list("step", "variant").distinct()
        assert {(1, ""), (1, "A"), (1, "B"), (2, "")} <= set(reactivated), set(reactivated)
    finally:
        HOOK["fn"] = None
        CRASH["armed"] = False
