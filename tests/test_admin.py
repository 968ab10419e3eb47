import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from autoengagement.models import ResultsDay, ResultsOutcome, RunPart
from autoengagement.services import results
from autoengagement.services.retention import prune_notification_logs
from tests.factories import (
    AppleDeviceRegistrationFactory,
    AutoEngagementConfigFactory,
    BusinessSessionFactory,
    CustomerFactory,
    NotificationLogFactory,
    WalletPassFactory,
)
from wallet.api_keys import api_key_create
from wallet.models import GoogleWalletMessage

pytestmark = pytest.mark.django_db

MODELS = [
    model for model in admin.site._registry if model._meta.app_label in {"wallet", "notifications", "autoengagement"}
]


@pytest.fixture
def populated():
    log = NotificationLogFactory()
    config = AutoEngagementConfigFactory()
    RunPart.objects.create(config=config, run_date=log.run_date, number=0, first_customer=0, last_customer=99)
    BusinessSessionFactory(business=log.business)
    api_key_create(business=log.business, name="sync")
    AppleDeviceRegistrationFactory()
    GoogleWalletMessage.objects.create(wallet_pass=WalletPassFactory(platform="google"), message_id="m1", notified=True)
    results.mark_stale([(log.business_id, log.run_date)])
    results.refresh_stale_days()
    prune_notification_logs(older_than_days=500, now=timezone.now())  # records the log's retention
    return log


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m._meta.label)
def test_changelist_and_change_pages_load(admin_client, populated, model):
    opts = model._meta
    response = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"), {"q": "x"})
    assert response.status_code == 200
    obj = model.objects.first()
    response = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
    assert response.status_code == 200


def test_every_domain_model_is_registered():
    labels = {model._meta.label for model in MODELS}
    assert labels == {
        "wallet.Business",
        "wallet.BusinessSession",
        "wallet.Customer",
        "wallet.WalletPass",
        "wallet.AppleDeviceRegistration",
        "wallet.GoogleWalletMessage",
        "wallet.ApiKey",
        "notifications.NotificationLog",
        "notifications.LogRetention",
        "autoengagement.AutoEngagementConfig",
        "autoengagement.ResultsDay",
        "autoengagement.RunPart",
    }


def test_staff_refresh_a_stale_results_day_and_see_its_summary(admin_client, populated):
    day = ResultsDay.objects.get()
    ResultsOutcome.objects.all().delete()
    ResultsDay.objects.update(stale=True)
    response = admin_client.post(
        reverse("admin:autoengagement_resultsday_changelist"),
        {"action": "refresh", "_selected_action": [day.pk]},
        follow=True,
    )
    assert "1 day(s) refreshed." in response.content.decode()
    day.refresh_from_db()
    assert day.stale is False
    outcome = ResultsOutcome.objects.get(day=day)
    assert (outcome.channel, outcome.status, outcome.rows) == ("wallet", "sent", 1)
    page = admin_client.get(reverse("admin:autoengagement_resultsday_change", args=[day.pk])).content.decode()
    assert "reached" in page and "wallet" in page
    assert admin_client.get(reverse("admin:autoengagement_resultsday_add")).status_code == 403


def test_notification_log_is_read_only(admin_client, populated):
    add_url = reverse("admin:notifications_notificationlog_add")
    assert admin_client.get(add_url).status_code == 403
    response = admin_client.post(
        reverse("admin:notifications_notificationlog_change", args=[populated.pk]), {"status": "failed"}
    )
    assert response.status_code == 403


def test_staff_see_when_a_customer_was_erased_but_cannot_set_it(admin_client):
    customer = CustomerFactory()
    page = admin_client.get(reverse("admin:wallet_customer_change", args=[customer.pk])).content.decode()
    assert "Erased at" in page
    assert 'name="erased_at' not in page
    assert 'name="first_name"' in page


def test_business_created_in_admin_gets_a_hashed_password(admin_client):
    from wallet.models import Business

    response = admin_client.post(
        reverse("admin:wallet_business_add"),
        {"name": "Shop", "email": "shop@example.com", "timezone": "UTC", "new_password": "a-secret-pass"},
    )
    assert response.status_code == 302
    business = Business.objects.get(email="shop@example.com")
    assert business.password != "a-secret-pass"
    assert business.check_password("a-secret-pass")


def _config_form(config, **changes):
    data = {
        "business": config.business_id,
        "enabled": "on",
        "inactivity_days": config.inactivity_days,
        "max_reminders": config.max_reminders,
        "max_inactivity_days": "" if config.max_inactivity_days is None else config.max_inactivity_days,
        "message_template_header": "We miss you",
        "message_template_body": "Come back",
        "channels": ["wallet"],
        "run_time": config.run_time,
        "timezone": config.timezone,
        "holdout_percent": config.holdout_percent,
        "attribution_days": config.attribution_days,
        "steps-TOTAL_FORMS": 0,  # the Journey section without steps (autoengagement.admin_forms)
        "steps-INITIAL_FORMS": 0,
    }
    return {**data, **changes}


def test_staff_set_max_inactivity_days_in_admin_within_its_bounds(admin_client):
    config = AutoEngagementConfigFactory(inactivity_days=7)
    url = reverse("admin:autoengagement_autoengagementconfig_change", args=[config.pk])
    response = admin_client.post(url, _config_form(config, max_inactivity_days=7))
    assert response.status_code == 200
    assert "max_inactivity_days" in response.context["adminform"].form.errors
    config.refresh_from_db()
    assert config.max_inactivity_days is None

    assert admin_client.post(url, _config_form(config, max_inactivity_days=8)).status_code == 302
    config.refresh_from_db()
    assert config.max_inactivity_days == 8
    assert admin_client.post(url, _config_form(config, max_inactivity_days="")).status_code == 302
    config.refresh_from_db()
    assert config.max_inactivity_days is None
