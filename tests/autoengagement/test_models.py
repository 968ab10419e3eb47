import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from autoengagement.models import DEFAULT_MESSAGE_TEMPLATE, AutoEngagementConfig
from tests.factories import AutoEngagementConfigFactory, BusinessFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def test_defaults():
    config = AutoEngagementConfig.objects.create(business=BusinessFactory())
    assert config.config_id.startswith("aec_")
    assert (config.enabled, config.inactivity_days, config.channels, config.run_time, config.timezone) == (
        True,
        7,
        ["wallet"],
        "09:00",
        "UTC",
    )
    assert config.message_template == DEFAULT_MESSAGE_TEMPLATE
    assert (config.max_reminders, config.max_inactivity_days, config.holdout_percent, config.attribution_days) == (
        1,
        None,
        0,
        14,
    )
    assert config.last_run_status is None
    assert config.total_customers_notified == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("inactivity_days", 0),
        ("inactivity_days", 366),
        ("run_time", "24:00"),
        ("run_time", "9:00"),
        ("timezone", "Mars/Olympus_Mons"),
        ("timezone", ""),
        ("channels", []),
        ("channels", ["wallet", "wallet"]),
        ("channels", ["fax"]),
        ("channels", "wallet"),
        ("message_template", {"header": "", "body": "x"}),
        ("message_template", {"header": "h"}),
        ("message_template", {"header": "h", "body": 3}),
        ("message_template", {"header": "h" * 121, "body": "b"}),
        ("message_template", {"header": "h", "body": "b" * 1001}),
        ("message_template", {"header": "Hi {name}", "body": "b"}),
        ("message_template", {"header": "Hi {first_name.__class__}", "body": "b"}),
        ("message_template", {"header": "Hi {first_name[0]}", "body": "b"}),
        ("message_template", {"header": "Hi {first_name", "body": "b"}),
        ("message_template", "hello"),
        ("max_inactivity_days", 7),
        ("max_inactivity_days", 3651),
        ("holdout_percent", 51),
        ("attribution_days", 0),
        ("max_reminders", 0),
    ],
)
def test_full_clean_rejects_and_names_the_field(field, value):
    config = AutoEngagementConfigFactory.build(business=BusinessFactory(), inactivity_days=7)
    setattr(config, field, value)
    with pytest.raises(ValidationError) as excinfo:
        config.full_clean()
    assert field in excinfo.value.message_dict


def test_full_clean_accepts_a_complete_valid_config():
    config = AutoEngagementConfigFactory.build(
        business=BusinessFactory(),
        inactivity_days=365,
        run_time="23:59",
        timezone="Asia/Kathmandu",
        channels=["wallet", "email", "sms", "push"],
        max_inactivity_days=3650,
        message_template={"header": "{first_name}", "body": "{business_name} {days_inactive}"},
    )
    config.full_clean()


def test_get_message_template_falls_back_to_defaults():
    config = AutoEngagementConfigFactory.build(message_template={"header": "Hello", "body": ""})
    assert config.get_message_template() == {"header": "Hello", "body": DEFAULT_MESSAGE_TEMPLATE["body"]}


def test_lease_lifecycle():
    config = AutoEngagementConfigFactory()
    assert config.can_run(NOW)
    config.mark_as_running(now=NOW, local_date=NOW.date(), lease_expires_at=NOW + dt.timedelta(seconds=600))
    config.refresh_from_db()
    assert config.last_run_status == "running"
    assert config.last_run_local_date == NOW.date()
    assert not config.can_run(NOW + dt.timedelta(seconds=599))
    assert config.can_run(NOW + dt.timedelta(seconds=601))

    config.mark_as_completed(5)
    config.mark_as_completed(3)
    config.refresh_from_db()
    assert (config.last_run_status, config.total_customers_notified, config.lease_expires_at) == ("success", 8, None)

    config.mark_as_failed("backend exploded")
    config.refresh_from_db()
    assert (config.last_run_status, config.last_run_error) == ("failed", "backend exploded")
    assert config.can_run(NOW)


def test_disabled_config_cannot_run():
    assert not AutoEngagementConfigFactory(enabled=False).can_run(NOW)
