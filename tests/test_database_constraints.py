"""Each constraint holds in the database itself: writes go around model validation and must fail."""

import datetime as dt

import pytest
from django.db import DataError, IntegrityError, models, transaction
from django.db.models import Value

from autoengagement.models import AutoEngagementConfig
from notifications.models import NotificationLog
from tests.factories import (
    AppleDeviceRegistrationFactory,
    AutoEngagementConfigFactory,
    BusinessFactory,
    BusinessSessionFactory,
    CustomerFactory,
    NotificationLogFactory,
    WalletPassFactory,
)
from wallet.models import AppleDeviceRegistration, Business, BusinessSession, Customer, WalletPass

pytestmark = pytest.mark.django_db


def assert_rejected(write):
    with pytest.raises((IntegrityError, DataError)), transaction.atomic():
        write()


def config_update(config, **fields):
    return lambda: AutoEngagementConfig.objects.filter(pk=config.pk).update(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"inactivity_days": 0},
        {"inactivity_days": 366},
        {"run_time": "24:00"},
        {"run_time": "9:00"},
        {"run_time": "09:60"},
        {"run_time": "0900"},
        {"run_time": "ab:cd"},
        {"run_time": "09:00:00"},
        {"last_run_status": "exploded"},
        {"max_reminders": 0},
        {"max_reminders": 11},
        {"max_inactivity_days": 7},
        {"max_inactivity_days": 3651},
        {"holdout_percent": 51},
        {"attribution_days": 0},
        {"attribution_days": 91},
        {"config_id": "biz_aaaaaaaaaaaaaaaaaaaa"},
    ],
    ids=lambda fields: "-".join(f"{k}={v}" for k, v in fields.items()),
)
def test_config_checks_reject_bad_values(fields):
    config = AutoEngagementConfigFactory(inactivity_days=7)
    assert_rejected(config_update(config, **fields))


@pytest.mark.parametrize(
    "fields",
    [
        {"inactivity_days": 1},
        {"inactivity_days": 365},
        {"run_time": "00:00"},
        {"run_time": "23:59"},
        {"run_time": "19:05"},
        {"last_run_status": None},
        {"last_run_status": "missed"},
        {"max_inactivity_days": 8},
        {"max_inactivity_days": 3650},
        {"holdout_percent": 50},
        {"attribution_days": 90},
    ],
    ids=lambda fields: "-".join(f"{k}={v}" for k, v in fields.items()),
)
def test_config_checks_accept_boundaries(fields):
    config = AutoEngagementConfigFactory(inactivity_days=7)
    assert config_update(config, **fields)() == 1


def test_config_id_is_unique():
    first, second = AutoEngagementConfigFactory(), AutoEngagementConfigFactory()
    assert_rejected(config_update(second, config_id=first.config_id))


def test_one_config_per_business():
    config = AutoEngagementConfigFactory()
    assert_rejected(lambda: AutoEngagementConfig.objects.bulk_create([AutoEngagementConfig(business=config.business)]))


def test_config_needs_an_existing_business():
    config = AutoEngagementConfigFactory()

    def point_at_missing_business():
        AutoEngagementConfig.objects.filter(pk=config.pk).update(business_id=10**9)
        # Foreign keys are checked at commit on PostgreSQL (deferred) and SQLite; force the check now.
        from django.db import connection

        connection.check_constraints()

    assert_rejected(point_at_missing_business)


def test_notification_log_once_per_config_customer_channel_run_date():
    log = NotificationLogFactory()
    duplicate = NotificationLog(
        business=log.business,
        customer=log.customer,
        config=log.config,
        channel=log.channel,
        run_date=log.run_date,
        status="pending",
    )
    assert_rejected(lambda: NotificationLog.objects.bulk_create([duplicate]))


def test_notification_log_other_channel_or_day_is_allowed():
    log = NotificationLogFactory()
    NotificationLog.objects.bulk_create(
        [
            NotificationLog(
                business=log.business, customer=log.customer, config=log.config, channel="email", run_date=log.run_date
            ),
            NotificationLog(
                business=log.business,
                customer=log.customer,
                config=log.config,
                channel=log.channel,
                run_date=log.run_date + dt.timedelta(days=1),
            ),
        ]
    )
    assert NotificationLog.objects.count() == 3


@pytest.mark.parametrize("fields", [{"channel": "fax"}, {"status": "lost"}, {"notification_id": "x"}])
def test_notification_log_checks(fields):
    log = NotificationLogFactory()
    assert_rejected(lambda: NotificationLog.objects.filter(pk=log.pk).update(**fields))


def test_business_email_and_id_unique():
    first, second = BusinessFactory(), BusinessFactory()
    assert_rejected(lambda: Business.objects.filter(pk=second.pk).update(email=first.email))
    assert_rejected(lambda: Business.objects.filter(pk=second.pk).update(business_id=first.business_id))
    assert_rejected(lambda: Business.objects.filter(pk=second.pk).update(business_id="cust_aaaaaaaaaaaaaaaaaaaa"))


def test_session_token_hash_unique():
    first, second = BusinessSessionFactory(), BusinessSessionFactory()
    assert_rejected(lambda: BusinessSession.objects.filter(pk=second.pk).update(token_hash=first.token_hash))


def test_customer_id_unique_and_prefixed():
    first, second = CustomerFactory(), CustomerFactory()
    assert_rejected(lambda: Customer.objects.filter(pk=second.pk).update(customer_id=first.customer_id))
    assert_rejected(lambda: Customer.objects.filter(pk=second.pk).update(customer_id="biz_aaaaaaaaaaaaaaaaaaaa"))


@pytest.mark.parametrize(
    "value",
    [[], ["tier"], "gold", 1, True, Value(None, models.JSONField())],
    ids=["empty-list", "list", "string", "number", "boolean", "json-null"],
)
def test_customer_attributes_must_be_an_object(value):
    customer = CustomerFactory()
    assert_rejected(lambda: Customer.objects.filter(pk=customer.pk).update(attributes=value))


@pytest.mark.parametrize("value", [{}, {"tier": "gold", "points": 120, "nested": {"a": [1]}}])
def test_customer_attributes_objects_are_accepted(value):
    customer = CustomerFactory()
    assert Customer.objects.filter(pk=customer.pk).update(attributes=value) == 1
    customer.refresh_from_db()
    assert customer.attributes == value


def test_wallet_pass_platform_and_id():
    wallet_pass = WalletPassFactory()
    assert_rejected(lambda: WalletPass.objects.filter(pk=wallet_pass.pk).update(platform="blackberry"))
    assert_rejected(lambda: WalletPass.objects.filter(pk=wallet_pass.pk).update(pass_id="cust_aaaaaaaaaaaaaaaaaaaa"))


def test_apple_registration_unique_per_device_and_pass():
    registration = AppleDeviceRegistrationFactory()
    duplicate = AppleDeviceRegistration(
        wallet_pass=registration.wallet_pass,
        push_token="other",
        device_library_identifier=registration.device_library_identifier,
    )
    assert_rejected(lambda: AppleDeviceRegistration.objects.bulk_create([duplicate]))
