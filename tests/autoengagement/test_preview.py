import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from autoengagement.services.preview import attribute_warnings, config_preview, text_warnings
from autoengagement.services.run import run_due_configs
from notifications.models import NotificationLog
from tests.factories import AutoEngagementConfigFactory, BusinessFactory, CustomerFactory, WalletPassFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def make_config(**fields):
    return AutoEngagementConfigFactory(business=BusinessFactory(name="Bean Bar"), **fields)


def quiet(config, days, **fields):
    return CustomerFactory(
        business=config.business, created_at=NOW - 500 * DAY, last_activity_at=NOW - days * DAY, **fields
    )


def test_preview_counts_reach_per_channel_and_renders_a_sample_without_writing():
    config = make_config(
        channels=["wallet", "email", "sms"],
        inactivity_days=7,
        max_inactivity_days=100,
        message_template={"header": "Hi {first_name}", "body": "{days_inactive} days"},
    )
    first = quiet(config, 10, first_name="Ana", sms_opt_out=True)
    WalletPassFactory(customer=first)
    quiet(config, 20, email="")
    quiet(config, 3)  # active
    quiet(config, 101)  # beyond max_inactivity_days
    quiet(config, 200)
    with CaptureQueriesContext(connection) as queries:
        preview = config_preview(config=config, now=NOW)
    assert len(queries) <= 4
    assert preview.audience == 2
    assert preview.reachable == {"wallet": 1, "email": 1, "sms": 1}
    assert preview.left_out_by_max_inactivity_days == 2
    assert preview.sample == {"customer_id": first.customer_id, "header": "Hi Ana", "body": "10 days"}
    assert preview.warnings == []
    assert not NotificationLog.objects.exists()


def test_preview_with_nobody_inactive_renders_an_example():
    config = make_config(inactivity_days=9, message_template={"header": "Hi {first_name}", "body": "{days_inactive}"})
    preview = config_preview(config=config, now=NOW)
    assert preview.audience == 0
    assert preview.sample == {"customer_id": "", "header": "Hi there", "body": "9"}


def test_text_warnings_per_channel():
    long_body = "x" * 91
    assert [w["channel"] for w in text_warnings(channels=["wallet", "push", "email"], header="h", body=long_body)] == [
        "wallet",
        "push",
    ]
    assert text_warnings(channels=["wallet"], header="h", body="x" * 90) == []
    assert text_warnings(channels=["sms"], header="h", body="x" * 158) == []  # 'h' + newline + 158 = 160
    assert "2 SMS segments" in text_warnings(channels=["sms"], header="h", body="x" * 159)[0]["message"]
    assert "non-GSM" in text_warnings(channels=["sms"], header="h", body="é" + "ж" * 70)[0]["message"]


def test_admin_preview_and_run_now_actions(admin_client):
    config = make_config(channels=["email"])
    member = quiet(config, 30, first_name="Ana")
    url = reverse("admin:autoengagement_autoengagementconfig_changelist")
    response = admin_client.post(url, {"action": "preview_audience", "_selected_action": [config.pk]}, follow=True)
    assert "1 customer(s) would be reached now (email: 1)" in response.content.decode()
    assert not NotificationLog.objects.exists()

    # "Run now" never runs inside the web request: it asks the next invocation, which runs it whatever the time.
    response = admin_client.post(url, {"action": "run_now", "_selected_action": [config.pk]}, follow=True)
    assert "Run requested for 1 business(es)" in response.content.decode()
    assert not NotificationLog.objects.exists()
    config.refresh_from_db()
    assert config.run_requested_at is not None
    summary = run_due_configs(now=timezone.now())
    assert [(o.business_id, o.notified) for o in summary.outcomes] == [(config.business.business_id, 1)]
    assert NotificationLog.objects.get(customer=member).status == "sent"
    config.refresh_from_db()
    assert (config.run_requested_at, config.last_run_status) == (None, "success")
    assert run_due_configs(now=timezone.now()).outcomes == [], "asked once, run once"
    admin_client.post(url, {"action": "run_now", "_selected_action": [config.pk]}, follow=True)
    assert run_due_configs(now=timezone.now()).outcomes[0].notified == 0
    assert NotificationLog.objects.count() == 1


def test_the_config_page_has_preview_audience_and_run_now_buttons(admin_client):
    config = make_config(channels=["wallet"], message_template={"header": "Hi", "body": "x" * 120})
    quiet(config, 30, first_name="Ana")
    change = reverse("admin:autoengagement_autoengagementconfig_change", args=[config.pk])
    preview = reverse("admin:autoengagement_autoengagementconfig_preview_audience", args=[config.pk])
    run_now = reverse("admin:autoengagement_autoengagementconfig_run_now", args=[config.pk])
    page = admin_client.get(change).content.decode()
    assert f'action="{preview}"' in page and f'action="{run_now}"' in page

    response = admin_client.post(preview, follow=True)

    assert response.redirect_chain == [(change, 302)]
    shown = [(message.level_tag, message.message) for message in response.context["messages"]]
    assert shown[0][0] == "info" and "1 customer(s) would be reached now (wallet: 0)" in shown[0][1]
    assert [level for level, _ in shown[1:]] == ["warning"]
    assert "a lock screen shows about 90" in shown[1][1]
    assert 'class="warning"' in response.content.decode()
    assert not NotificationLog.objects.exists()

    assert admin_client.get(run_now).status_code == 403  # a link runs nothing
    config.refresh_from_db()
    assert config.run_requested_at is None
    assert admin_client.post(run_now).status_code == 302
    config.refresh_from_db()
    assert config.run_requested_at is not None


def test_run_now_needs_the_change_permission(client):
    from django.contrib.auth.models import Permission, User

    config = make_config()
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_autoengagementconfig"))
    client.force_login(viewer)
    change = reverse("admin:autoengagement_autoengagementconfig_change", args=[config.pk])
    run_now = reverse("admin:autoengagement_autoengagementconfig_run_now", args=[config.pk])

    assert "Run now" not in client.get(change).content.decode()
    assert client.post(run_now).status_code == 403
    config.refresh_from_db()
    assert config.run_requested_at is None
    preview = reverse("admin:autoengagement_autoengagementconfig_preview_audience", args=[config.pk])
    assert client.post(preview).status_code == 302


# --- warnings per step, variant and channel (journeys), and attributes no customer has ---

SHORT = {"header": "Hi", "body": "Come back"}


def step(after_days, **fields):
    return {"after_days": after_days, "message": SHORT, **fields}


def journey_config(steps, **fields):
    return make_config(steps=steps, inactivity_days=steps[0]["after_days"], max_reminders=len(steps), **fields)


def messages(warnings):
    return [(w["channel"], w["step"], w["variant"], w["message"]) for w in warnings]


def test_a_step_with_short_texts_has_no_warnings():
    config = journey_config([step(7), step(14, sms={"text": "x" * 160})], channels=["wallet", "email", "sms", "push"])
    assert config_preview(config=config, now=NOW).warnings == []


def test_text_warnings_name_the_step_and_the_channel():
    config = journey_config(
        [
            step(7),
            step(
                14,
                sms={"text": "x" * 161},
                push={"title": "t", "body": "p" * 91},
                wallet={"header": "w", "body": "ж" * 91},
                email={"subject": "s", "text": "e" * 1000},
            ),
        ],
        channels=["wallet", "email", "sms", "push"],
    )
    assert messages(config_preview(config=config, now=NOW).warnings) == [
        (
            "wallet",
            2,
            "",
            "step 2: The body has 91 characters; a lock screen shows about 90, the rest is cut off.",
        ),
        ("sms", 2, "", "step 2: The text needs 2 SMS segments; one segment holds 160 GSM-7 characters."),
        ("push", 2, "", "step 2: The body has 91 characters; a lock screen shows about 90, the rest is cut off."),
    ]


def test_sms_of_the_message_counts_header_and_body_and_non_gsm_text():
    config = journey_config(
        [step(7, message={"header": "h", "body": "x" * 159}), step(9, message={"header": "h", "body": "é" + "ж" * 70})],
        channels=["sms"],
    )
    assert messages(config_preview(config=config, now=NOW).warnings) == [
        ("sms", 1, "", "step 1: Header and body need 2 SMS segments; one segment holds 160 GSM-7 characters."),
        (
            "sms",
            2,
            "",
            "step 2: Header and body need 2 SMS segments; one segment holds 70 characters (it has non-GSM characters).",
        ),
    ]


def test_variants_are_warned_about_where_their_content_differs_and_once_where_it_is_shared():
    variants = [
        {"name": "plain", "weight": 50},
        {"name": "long offer", "weight": 50, "sms": {"text": "o" * 200}},
    ]
    config = journey_config(
        [step(7, message={"header": "Hi", "body": "b" * 100}, variants=variants)], channels=["push", "sms"]
    )
    assert messages(config_preview(config=config, now=NOW).warnings) == [
        ("push", 1, "", "step 1: The body has 100 characters; a lock screen shows about 90, the rest is cut off."),
        (
            "sms",
            1,
            "long offer",
            "step 1, variant long offer: The text needs 2 SMS segments; one segment holds 160 GSM-7 characters.",
        ),
    ]


def test_texts_are_measured_as_rendered_for_the_sample_customer():
    body = "{first_name}" + "x" * 85
    short_name = journey_config([step(7, push={"title": "t", "body": body})], channels=["push"])
    quiet(short_name, 10, first_name="Ana")  # 88 characters
    assert config_preview(config=short_name, now=NOW).warnings == []
    long_name = journey_config([step(7, push={"title": "t", "body": body})], channels=["push"])
    quiet(long_name, 10, first_name="Maximilienne")  # 97 characters
    assert [w["message"] for w in config_preview(config=long_name, now=NOW).warnings] == [
        "step 1: The body has 97 characters; a lock screen shows about 90, the rest is cut off."
    ]


def test_content_for_a_channel_the_config_does_not_use_is_warned_about():
    variants = [{"name": "a", "weight": 50, "push": {"title": "t", "body": "b"}}, {"name": "b", "weight": 50}]
    config = journey_config([step(7, email={"subject": "s", "text": "t"}, variants=variants)], channels=["wallet"])
    assert messages(config_preview(config=config, now=NOW).warnings) == [
        ("email", 1, "", "step 1 has content for email, which is not one of the config's channels: it is never sent."),
        ("push", 1, "", "step 1 has content for push, which is not one of the config's channels: it is never sent."),
    ]


def test_a_step_waiting_longer_than_max_inactivity_days_is_warned_about():
    config = journey_config([step(7), step(45), step(60)], max_inactivity_days=45, channels=["email"])
    assert messages(config_preview(config=config, now=NOW).warnings) == [
        (
            None,
            3,
            "",
            "step 3 waits 60 days, but customers inactive for more than max_inactivity_days (45) are left alone: it is "
            "never sent.",
        )
    ]


def test_an_attribute_no_customer_has_is_named_in_one_query():
    variants = [
        {"name": "a", "weight": 50},
        {"name": "b", "weight": 50, "message": {"header": "{attributes.tier}", "body": "{attributes.points|0}"}},
    ]
    config = journey_config(
        [
            step(7, message={"header": "Hi {attributes.tier|friend}", "body": "b"}, variants=variants),
            step(14, email={"subject": "s", "text": "Code {attributes.code}", "html": "<b>{attributes.points}</b>"}),
        ],
        channels=["email"],
    )
    quiet(config, 3, attributes={"tier": "gold"})
    quiet(config, 3, attributes={})
    # Another business's customers never count.
    CustomerFactory(attributes={"points": 10, "code": "X"})
    with CaptureQueriesContext(connection) as queries:
        warnings = attribute_warnings(config=config)
    assert len(queries) == 1
    assert messages(warnings) == [
        (
            None,
            None,
            "",
            "No customer of this business has the attribute 'code': {attributes.code} renders its fallback "
            "(or nothing) for everyone. Used in: step 2, email.",
        ),
        (
            None,
            None,
            "",
            "No customer of this business has the attribute 'points': {attributes.points} renders its fallback (or "
            "nothing) for everyone. Used in: step 1, variant b, message; step 2, email.",
        ),
    ]
    quiet(config, 3, attributes={"points": 0, "code": ""})
    assert attribute_warnings(config=config) == []


def test_attributes_of_a_config_without_steps_are_checked_and_none_used_costs_no_query():
    config = make_config(message_template={"header": "Hi {attributes.nickname|there}", "body": "b"})
    assert [w["message"] for w in config_preview(config=config, now=NOW).warnings] == [
        "No customer of this business has the attribute 'nickname': {attributes.nickname} renders its fallback (or "
        "nothing) for everyone. Used in: message_template."
    ]
    plain = make_config(message_template={"header": "Hi {first_name}", "body": "b"})
    with CaptureQueriesContext(connection) as queries:
        assert attribute_warnings(config=plain) == []
    assert len(queries) == 0


def test_a_journey_preview_stays_a_few_queries():
    config = journey_config(
        [step(7, message={"header": "{attributes.tier|Hi}", "body": "b"}), step(14), step(21)],
        channels=["wallet", "sms", "email"],
        max_inactivity_days=100,
    )
    for days in (10, 20, 30):
        quiet(config, days, attributes={"tier": "gold"})
    with CaptureQueriesContext(connection) as queries:
        preview = config_preview(config=config, now=NOW)
    assert len(queries) <= 5
    assert preview.audience == 3
    assert preview.warnings == []
