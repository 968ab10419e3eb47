import datetime as dt

import factory
from django.utils import timezone

from autoengagement.models import AutoEngagementConfig
from autoengagement.services import results
from notifications.models import NotificationLog
from wallet.models import AppleDeviceRegistration, Business, BusinessSession, Customer, WalletPass
from wallet.tokens import hash_token

DEFAULT_PASSWORD = "correct-horse-battery"


class BusinessFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Business

    name = factory.Sequence(lambda n: f"Business {n}")
    email = factory.Sequence(lambda n: f"owner{n}@example.com")
    password = factory.django.Password(DEFAULT_PASSWORD)
    timezone = "UTC"


class BusinessSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BusinessSession

    class Params:
        token = factory.Sequence(lambda n: f"test-token-{n}")

    business = factory.SubFactory(BusinessFactory)
    token_hash = factory.LazyAttribute(lambda o: hash_token(o.token))
    expires_at = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(days=1))


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    business = factory.SubFactory(BusinessFactory)
    first_name = factory.Sequence(lambda n: f"First{n}")
    last_name = "Customer"
    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    phone = factory.Sequence(lambda n: f"+1415555{n % 10000:04d}")


class WalletPassFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WalletPass

    customer = factory.SubFactory(CustomerFactory)
    platform = WalletPass.Platform.APPLE


class AppleDeviceRegistrationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AppleDeviceRegistration

    wallet_pass = factory.SubFactory(WalletPassFactory)
    device_library_identifier = factory.Sequence(lambda n: f"device{n}")
    push_token = factory.Sequence(lambda n: f"{n:064x}")


class AutoEngagementConfigFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AutoEngagementConfig

    business = factory.SubFactory(BusinessFactory)


class NotificationLogFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NotificationLog

    config = factory.SubFactory(AutoEngagementConfigFactory)
    business = factory.SelfAttribute("config.business")
    customer = factory.SubFactory(CustomerFactory, business=factory.SelfAttribute("..business"))
    channel = "wallet"
    status = NotificationLog.Status.SENT
    created_at = factory.LazyFunction(timezone.now)
    run_date = factory.LazyAttribute(lambda row: row.created_at.date())


def save_logs(rows: list[NotificationLog]) -> list[NotificationLog]:
    """Write hand-built log rows the way the project's writers do: the rows, then their results days marked stale
    (so the stats count them from the log until the days are refreshed)."""
    saved = NotificationLog.objects.bulk_create(rows)
    results.mark_stale((row.business_id, row.run_date) for row in saved)
    return saved


def log_row(config, customer, run_date: dt.date, *, status: str = "sent", channel: str = "wallet", **fields):
    """An unsaved re-engagement log row of `config`, written at 09:00 UTC on `run_date` unless `created_at` says."""
    fields.setdefault("created_at", dt.datetime.combine(run_date, dt.time(9), tzinfo=dt.UTC))
    return NotificationLog(
        business=config.business,
        config=config,
        customer=customer,
        channel=channel,
        status=status,
        run_date=run_date,
        **fields,
    )
