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
