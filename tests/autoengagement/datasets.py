"""Hand-built datasets the results tests share (the API, the admin pages, the demo): each documents what it holds so
a test can assert every number."""

import datetime as dt
import zoneinfo

from autoengagement.services.run import run_due_configs
from notifications.models import NotificationLog
from tests.factories import AutoEngagementConfigFactory, BusinessFactory, CustomerFactory, save_logs
from wallet.models import Customer

S = NotificationLog.Status
ZONE = "Europe/Paris"  # UTC+1 in early March 2026
DAY_1 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)  # 09:00 in Paris on 2026-03-02
DAY_2 = DAY_1 + dt.timedelta(days=1)
WINDOW = {"date_from": "2026-03-02", "date_to": "2026-03-04"}


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def customers_of(business, count: int) -> list[Customer]:
    return Customer.objects.bulk_create(
        CustomerFactory.build(business=business, created_at=utc(2025, 1, 1)) for _ in range(count)
    )


def stats_row(config, customer, channel, status, created_at, **fields) -> NotificationLog:
    return NotificationLog(
        business=config.business,
        config=config,
        customer=customer,
        channel=channel,
        status=status,
        created_at=created_at,
        run_date=created_at.astimezone(zoneinfo.ZoneInfo(ZONE)).date(),  # the local date of the run, as runs write
        **fields,
    )


def build_dataset(business) -> None:
    """Newcombe's worked example as customers: 56 of 70 reached and 48 of 80 held out came back.

    Reached: 40 on day 1, 30 on day 2, each with a wallet row sent (25 of them delivered) and an email row (failed
    for the first 10, sent for the others); the first 56 came back. Holdout: 80 on day 1, a holdout row per
    channel; the first 48 came back. Plus a customer with only skipped rows, a failed row 30 minutes after local
    midnight (inside), sent rows just before the first and after the last local day (outside).
    """
    config = AutoEngagementConfigFactory(business=business, channels=["wallet", "email"], holdout_percent=50)
    reached = customers_of(business, 70)
    held = customers_of(business, 80)
    extra = customers_of(business, 4)
    rows = []
    for index, customer in enumerate(reached):
        at = DAY_1 if index < 40 else DAY_2
        back = at + dt.timedelta(days=3) if index < 56 else None
        delivered = at + dt.timedelta(minutes=5) if index < 25 else None
        rows.append(
            stats_row(config, customer, "wallet", S.SENT, at, sent_at=at, reactivated_at=back, delivered_at=delivered)
        )
        email = S.FAILED if index < 10 else S.SENT
        rows.append(stats_row(config, customer, "email", email, at, reactivated_at=back))
    for index, customer in enumerate(held):
        back = DAY_1 + dt.timedelta(days=2) if index < 48 else None
        rows += [
            stats_row(config, customer, channel, S.HOLDOUT, DAY_1, reactivated_at=back)
            for channel in ("wallet", "email")
        ]
    skipped_only, failed_early, before, after = extra
    rows += [
        stats_row(config, skipped_only, c, S.SKIPPED, utc(2026, 3, 4, 8), error="no address")
        for c in ("wallet", "email")
    ]
    rows.append(stats_row(config, failed_early, "wallet", S.FAILED, utc(2026, 3, 1, 23, 30)))  # 00:30 local, 2 March
    rows.append(stats_row(config, before, "wallet", S.SENT, utc(2026, 3, 1, 22, 59), reactivated_at=DAY_1))  # 1 March
    rows.append(stats_row(config, after, "wallet", S.SENT, utc(2026, 3, 4, 23, 0), reactivated_at=DAY_2))  # 5 March
    save_logs(rows)


DAY_3 = DAY_1 + dt.timedelta(days=2)  # 09:00 in Paris on 2026-03-04, the window's last day

# A two-step journey whose first step's variants are listed against their names' order ("short" before "long").
JOURNEY_STEPS = [
    {
        "after_days": 7,
        "message": {"header": "We miss you", "body": "Come back soon."},
        "variants": [
            {"name": "short", "weight": 50},
            {"name": "long", "weight": 50, "message": {"header": "We miss you", "body": "It has been a while..."}},
        ],
    },
    {
        "after_days": 14,
        "message": {"header": "Still there?", "body": "We kept your table."},
        "variants": [
            {"name": "control", "weight": 50},
            {"name": "offer", "weight": 50, "message": {"header": "A coffee on us", "body": "Show this pass."}},
        ],
    },
]


def build_journey_dataset(business, *, credited: bool = True) -> dict[str, list[Customer]]:
    """Newcombe's worked examples as a journey's variants (wallet only; Paris; window 2 to 4 March).

    Step 1 on 2 March: "short" reached 70, of whom 56 came back; "long" reached 80, 48 came back. Holdout 80 on
    2 March (step 1, no variant), 48 came back. Step 2 on 4 March, to 20 of step 1's customers who had not come
    back: "control" 10, 3 came back; "offer" 10, 9 came back (credited to their step 2 row: the latest
    re-engagement). So short - holdout is Newcombe's example (a), 56/70 - 48/80; long - short its mirror; offer -
    control example (b), 9/10 - 3/10. Plus a step 2 "offer" row failed (reaches nobody) and one skipped on 4 March,
    and a step 2 "offer" row sent and credited on 5 March (outside the window).

    Without `credited`, no row has reactivated_at: the visits are for the caller to record. Returns the customers
    by group.
    """
    config = AutoEngagementConfigFactory(
        business=business,
        channels=["wallet"],
        holdout_percent=20,
        steps=JOURNEY_STEPS,
        inactivity_days=7,
        max_reminders=2,
        message_template=dict(JOURNEY_STEPS[0]["message"]),
    )
    groups = {
        "short": customers_of(business, 70),
        "long": customers_of(business, 80),
        "holdout": customers_of(business, 80),
    }
    # Step 2 goes to the first 10 of each variant's customers who did not come back.
    groups["control"] = groups["short"][56:66]
    groups["offer"] = groups["long"][48:58]
    groups["extra"] = customers_of(business, 3)
    back_after_step_1 = DAY_1 + dt.timedelta(days=1)
    back_after_step_2 = DAY_3 + dt.timedelta(days=1)

    def row(customer, status, at, step, variant, back=None, **fields):
        return stats_row(
            config,
            customer,
            "wallet",
            status,
            at,
            step=step,
            variant=variant,
            reactivated_at=back if credited else None,
            **fields,
        )

    rows = []
    for name, came_back in (("short", 56), ("long", 48)):
        for index, customer in enumerate(groups[name]):
            rows.append(row(customer, S.SENT, DAY_1, 1, name, back_after_step_1 if index < came_back else None))
    for index, customer in enumerate(groups["holdout"]):
        rows.append(row(customer, S.HOLDOUT, DAY_1, 1, "", back_after_step_1 if index < 48 else None))
    for name, came_back in (("control", 3), ("offer", 9)):
        for index, customer in enumerate(groups[name]):
            rows.append(row(customer, S.SENT, DAY_3, 2, name, back_after_step_2 if index < came_back else None))
    failed, skipped, later = groups["extra"]
    rows.append(row(failed, S.FAILED, DAY_3, 2, "offer", error="boom"))
    rows.append(row(skipped, S.SKIPPED, DAY_3, 2, "offer", error="no pass"))
    rows.append(row(later, S.SENT, DAY_3 + dt.timedelta(days=1), 2, "offer", DAY_3 + dt.timedelta(days=2)))
    save_logs(rows)
    return groups


# 3/11 10:00 in Kiritimati, 3/10 09:00 in Pago Pago: the moment a config moved west runs a day "earlier".
MOVED_WEST_AT = dt.datetime(2026, 3, 10, 20, 0, tzinfo=dt.UTC)


def business_whose_config_moved_west():
    """Five customers reached by a config in Kiritimati (run date 3/11, summarised); the config is then deleted
    and recreated in Pago Pago, due a minute later with run date 3/10, a day before the summarised one."""
    now = MOVED_WEST_AT
    business = BusinessFactory()
    Customer.objects.bulk_create(
        CustomerFactory.build(business=business, created_at=now - dt.timedelta(days=30)) for _ in range(5)
    )
    first = AutoEngagementConfigFactory(
        business=business, channels=["email"], run_time="10:00", timezone="Pacific/Kiritimati"
    )
    assert run_due_configs(now=now).outcomes[0].sent == 5  # run_date 2026-03-11
    first.delete()
    AutoEngagementConfigFactory(business=business, channels=["email"], run_time="09:00", timezone="Pacific/Pago_Pago")
    return business
