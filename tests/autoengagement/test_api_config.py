import pytest
from django.forms.models import model_to_dict

from autoengagement.models import DEFAULT_MESSAGE_TEMPLATE, AutoEngagementConfig
from tests.factories import AutoEngagementConfigFactory, NotificationLogFactory

pytestmark = pytest.mark.django_db

URL = "/api/auto-engagement/config"

CONFIG_KEYS = {
    "config_id",
    "business_id",
    "enabled",
    "inactivity_days",
    "message_template",
    "channels",
    "run_time",
    "timezone",
    "max_reminders",
    "max_inactivity_days",
    "holdout_percent",
    "attribution_days",
    "last_run_at",
    "last_run_status",
    "last_run_error",
    "total_customers_notified",
    "created_at",
    "updated_at",
}
READ_ONLY = [
    "config_id",
    "business_id",
    "last_run_at",
    "last_run_status",
    "last_run_error",
    "total_customers_notified",
    "created_at",
    "updated_at",
]
TEMPLATE = {"header": "Hi {first_name}", "body": "{days_inactive} days at {business_name}"}

# (field, value) pairs that must each be a 400 naming that field.
INVALID = [
    ("inactivity_days", 0),
    ("inactivity_days", 366),
    ("inactivity_days", -1),
    ("inactivity_days", "7"),
    ("inactivity_days", 7.0),
    ("inactivity_days", 7.5),
    ("inactivity_days", True),
    ("inactivity_days", None),
    ("enabled", "true"),
    ("enabled", 1),
    ("enabled", None),
    ("run_time", "24:00"),
    ("run_time", "9:00"),
    ("run_time", "09:60"),
    ("run_time", "09:00:00"),
    ("run_time", " 09:00"),
    ("run_time", 900),
    ("run_time", ""),
    ("timezone", "Mars/Olympus_Mons"),
    ("timezone", ""),
    ("timezone", "utc "),
    ("timezone", 1),
    ("channels", []),
    ("channels", ["wallet", "wallet"]),
    ("channels", ["fax"]),
    ("channels", ["wallet", "Email"]),
    ("channels", "wallet"),
    ("channels", [1]),
    ("channels", None),
    ("message_template", "hello"),
    ("message_template", {}),
    ("message_template", {"header": "h"}),
    ("message_template", {"body": "b"}),
    ("message_template", {"header": "", "body": "b"}),
    ("message_template", {"header": "h", "body": "   "}),
    ("message_template", {"header": 3, "body": "b"}),
    ("message_template", {"header": "h", "body": ["b"]}),
    ("message_template", {"header": None, "body": "b"}),
    ("message_template", {"header": "h" * 121, "body": "b"}),
    ("message_template", {"header": "h", "body": "b" * 1001}),
    ("message_template", {"header": "Hi {name}", "body": "b"}),
    ("message_template", {"header": "h", "body": "{first_name.__class__}"}),
    ("message_template", {"header": "h", "body": "{first_name[0]}"}),
    ("message_template", {"header": "h", "body": "{0}"}),
    ("message_template", {"header": "h", "body": "{}"}),
    ("message_template", {"header": "Hi {first_name", "body": "b"}),
    ("message_template", {"header": "h", "body": "b", "footer": "f"}),
    ("max_reminders", 0),
    ("max_reminders", 11),
    ("max_reminders", "2"),
    ("max_inactivity_days", 7),
    ("max_inactivity_days", 3),
    ("max_inactivity_days", 3651),
    ("max_inactivity_days", "30"),
    ("holdout_percent", -1),
    ("holdout_percent", 51),
    ("holdout_percent", 10.0),
    ("attribution_days", 0),
    ("attribution_days", 91),
    ("attribution_days", False),
]

VALID = [
    ("inactivity_days", 1),
    ("inactivity_days", 365),
    ("enabled", False),
    ("run_time", "00:00"),
    ("run_time", "23:59"),
    ("timezone", "Europe/Paris"),
    ("timezone", "Asia/Kathmandu"),
    ("channels", ["wallet", "email", "sms", "push"]),
    ("channels", ["push"]),
    ("message_template", TEMPLATE),
    ("message_template", {"header": "h" * 120, "body": "b" * 1000}),
    ("message_template", {"header": "Plain", "body": "No placeholder at all"}),
    ("max_reminders", 1),
    ("max_reminders", 10),
    ("max_inactivity_days", 8),
    ("max_inactivity_days", 3650),
    ("max_inactivity_days", None),
    ("holdout_percent", 0),
    ("holdout_percent", 50),
    ("attribution_days", 1),
    ("attribution_days", 90),
]


def _state(config: AutoEngagementConfig) -> dict:
    config.refresh_from_db()
    return model_to_dict(config) | {"updated_at": config.updated_at}


# --- GET ---


def test_get_without_a_config_is_a_404(api):
    response = api.get(URL)
    assert response.status_code == 404
    assert response.json() == {"detail": "This business has no auto-engagement config yet; POST one first."}


def test_get_returns_the_config_json(api, business):
    config = AutoEngagementConfigFactory(business=business, channels=["wallet", "sms"], max_inactivity_days=90)
    response = api.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == CONFIG_KEYS
    assert body["config_id"] == config.config_id
    assert body["business_id"] == business.business_id
    assert body["channels"] == ["wallet", "sms"]
    assert body["max_inactivity_days"] == 90
    assert body["last_run_status"] is None


# --- POST: create and update ---


def test_post_creates_with_defaults_for_omitted_fields(api, business):
    response = api.post(URL, {"inactivity_days": 30}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == CONFIG_KEYS
    config = AutoEngagementConfig.objects.get(business=business)
    assert body["config_id"] == config.config_id
    assert body["business_id"] == business.business_id
    assert (config.inactivity_days, config.enabled, config.channels, config.run_time, config.timezone) == (
        30,
        True,
        ["wallet"],
        "09:00",
        "UTC",
    )
    assert config.message_template == DEFAULT_MESSAGE_TEMPLATE
    assert body["message_template"] == DEFAULT_MESSAGE_TEMPLATE
    assert (body["max_reminders"], body["holdout_percent"], body["attribution_days"]) == (1, 0, 14)


def test_post_with_an_empty_object_creates_the_default_config(api, business):
    assert api.post(URL, {}, format="json").status_code == 201
    assert AutoEngagementConfig.objects.filter(business=business).count() == 1


def test_post_updates_only_the_given_fields(api, business):
    config = AutoEngagementConfigFactory(
        business=business, inactivity_days=14, channels=["email"], run_time="10:30", timezone="Europe/Paris"
    )
    before = _state(config)
    response = api.post(URL, {"run_time": "18:00", "enabled": False}, format="json")
    assert response.status_code == 200
    after = _state(config)
    assert (after["run_time"], after["enabled"]) == ("18:00", False)
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {"run_time", "enabled", "updated_at"}
    assert response.json()["config_id"] == config.config_id
    assert AutoEngagementConfig.objects.count() == 1


@pytest.mark.parametrize(("field", "value"), VALID)
def test_each_valid_value_is_accepted(api, business, field, value):
    response = api.post(URL, {field: value}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()[field] == value
    assert getattr(AutoEngagementConfig.objects.get(business=business), field) == value


@pytest.mark.parametrize(("field", "value"), INVALID)
def test_each_invalid_value_is_a_400_and_creates_nothing(api, field, value):
    response = api.post(URL, {field: value}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert list(body) == [field]
    assert all(isinstance(message, str) for message in body[field])
    assert not AutoEngagementConfig.objects.exists()


@pytest.mark.parametrize(("field", "value"), INVALID)
def test_each_invalid_value_is_a_400_and_changes_nothing(api, business, field, value):
    config = AutoEngagementConfigFactory(business=business)
    before = _state(config)
    valid_other = {"attribution_days": 20} if field != "attribution_days" else {"holdout_percent": 10}
    response = api.post(URL, {field: value, **valid_other}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert _state(config) == before


def test_an_unknown_placeholder_is_named_in_the_error(api):
    response = api.post(URL, {"message_template": {"header": "Hi {name}", "body": "b"}}, format="json")
    assert response.status_code == 400
    assert "{name}" in response.json()["message_template"][0]


def test_all_errors_are_reported_at_once(api):
    body = {
        "inactivity_days": 0,
        "enabled": "yes",
        "run_time": "24:00",
        "timezone": "Nowhere/Land",
        "channels": [],
        "message_template": {"header": "{bad}", "body": ""},
        "holdout_percent": 60,
        "colour": "blue",
        "config_id": "aec_AAAAAAAAAAAAAAAAAAAA",
    }
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert set(errors) == set(body)
    assert len(errors["message_template"]) == 2
    assert errors["colour"] == ["Unknown field."]
    assert errors["config_id"] == ["This field is read-only."]
    assert not AutoEngagementConfig.objects.exists()


@pytest.mark.parametrize("field", READ_ONLY)
def test_read_only_fields_are_rejected_by_name(api, business, field):
    config = AutoEngagementConfigFactory(business=business)
    before = _state(config)
    response = api.post(URL, {field: "x", "inactivity_days": 20}, format="json")
    assert response.status_code == 400
    assert response.json() == {field: ["This field is read-only."]}
    assert _state(config) == before


@pytest.mark.parametrize("field", ["lease_expires_at", "last_run_local_date", "business", "id", "Enabled"])
def test_unknown_and_internal_fields_are_rejected(api, field):
    response = api.post(URL, {field: None}, format="json")
    assert response.status_code == 400
    assert response.json() == {field: ["Unknown field."]}
    assert not AutoEngagementConfig.objects.exists()


@pytest.mark.parametrize("raw", ["{not json", '{"inactivity_days": 7,}', "[]", '"config"', "7", "null"])
def test_malformed_or_non_object_json_is_a_400(api, raw):
    response = api.post(URL, raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()
    assert not AutoEngagementConfig.objects.exists()


def test_malformed_json_says_so(api):
    response = api.post(URL, "{not json", content_type="application/json")
    assert response.json()["detail"].startswith("JSON parse error")


def test_form_data_is_refused(api):
    assert api.post(URL, {"inactivity_days": 7}).status_code == 415
    assert not AutoEngagementConfig.objects.exists()


# --- max_inactivity_days against the inactivity_days in force after the update ---


def test_max_inactivity_days_is_checked_against_the_stored_inactivity_days(api, business):
    AutoEngagementConfigFactory(business=business, inactivity_days=30)
    response = api.post(URL, {"max_inactivity_days": 30}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["max_inactivity_days"]
    assert api.post(URL, {"max_inactivity_days": 31}, format="json").status_code == 200


def test_raising_inactivity_days_past_the_stored_maximum_is_a_400(api, business):
    config = AutoEngagementConfigFactory(business=business, inactivity_days=7, max_inactivity_days=30)
    response = api.post(URL, {"inactivity_days": 30}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["inactivity_days"]
    config.refresh_from_db()
    assert config.inactivity_days == 7


def test_both_limits_change_together(api, business):
    AutoEngagementConfigFactory(business=business, inactivity_days=7, max_inactivity_days=30)
    response = api.post(URL, {"inactivity_days": 60, "max_inactivity_days": 120}, format="json")
    assert response.status_code == 200
    assert (response.json()["inactivity_days"], response.json()["max_inactivity_days"]) == (60, 120)
    response = api.post(URL, {"inactivity_days": 365, "max_inactivity_days": None}, format="json")
    assert response.status_code == 200
    assert response.json()["max_inactivity_days"] is None


def test_on_create_max_inactivity_days_is_checked_against_the_default(api):
    assert api.post(URL, {"max_inactivity_days": 7}, format="json").status_code == 400
    assert not AutoEngagementConfig.objects.exists()


# --- DELETE ---


def test_delete_removes_the_config_and_keeps_the_history(api, business):
    log = NotificationLogFactory(config=AutoEngagementConfigFactory(business=business))
    response = api.delete(URL)
    assert response.status_code == 204
    assert not response.content
    assert not AutoEngagementConfig.objects.exists()
    log.refresh_from_db()
    assert log.config is None
    assert api.get(URL).status_code == 404
    assert api.delete(URL).status_code == 404


def test_delete_without_a_config_is_a_404(api):
    assert api.delete(URL).status_code == 404


# --- tenant isolation ---


def test_a_business_never_reads_or_changes_another_businesss_config(api, business, other_api, other_business):
    config = AutoEngagementConfigFactory(business=business, inactivity_days=30)
    before = _state(config)
    assert other_api.get(URL).status_code == 404
    assert other_api.delete(URL).status_code == 404
    response = other_api.post(URL, {"inactivity_days": 5}, format="json")
    assert response.status_code == 201
    assert response.json()["business_id"] == other_business.business_id
    assert response.json()["config_id"] != config.config_id
    assert _state(config) == before
    assert api.get(URL).json()["inactivity_days"] == 30
    assert other_api.delete(URL).status_code == 204
    assert AutoEngagementConfig.objects.get() == config


def test_config_writes_are_logged(api, business, caplog):
    caplog.set_level("INFO", logger="autoengagement.services.config")
    api.post(URL, {}, format="json")
    record = next(r for r in caplog.records if r.message == "config saved")
    assert record.business_id == business.business_id
    assert record.config_created is True
