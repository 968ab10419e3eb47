"""The config API's `steps` (a journey): validation through the API, the seed fields mirroring the journey, null back
to the seed fields, partial updates, nothing written on a 400, tenant isolation; and the time zone a new config
takes from its business."""

import copy
import json
import re
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.forms.models import model_to_dict

from autoengagement.models import AutoEngagementConfig
from autoengagement.services.config import config_upsert
from autoengagement.templating import ALLOWED
from tests.factories import AutoEngagementConfigFactory, BusinessFactory

pytestmark = pytest.mark.django_db

URL = "/api/auto-engagement/config"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"

FIRST = {"header": "We miss you, {first_name}", "body": "Come back to {business_name}"}
JOURNEY = [
    {
        "after_days": 14,
        "message": FIRST,
        "variants": [
            {"name": "plain", "weight": 50},
            {"name": "offer", "weight": 50, "message": {"header": "20% off", "body": "Code {attributes.code|WELCOME}"}},
        ],
    },
    {
        "after_days": 30,
        "message": {"header": "Still there?", "body": "We kept your points"},
        "email": {"subject": "Your points", "text": "You have {attributes.points|some} points", "html": "<p>Hi</p>"},
        "sms": {"text": "Your points wait at {business_name}"},
        "push": {"title": "Points", "body": "They wait"},
        "wallet": {"header": "Points", "body": "{attributes.points|Your} points"},
    },
    {"after_days": 60, "message": {"header": "Last call", "body": "Goodbye soon"}},
]
SEED_TEMPLATE = {"header": "Hi {first_name}", "body": "It has been {days_inactive} days"}


def _state(config: AutoEngagementConfig) -> dict:
    config.refresh_from_db()
    return model_to_dict(config) | {"updated_at": config.updated_at}


def _step(after_days: int = 3, **fields) -> dict:
    return {"after_days": after_days, "message": {"header": "h", "body": "b"}, **fields}


def _variants(*weights: int, **fields) -> list[dict]:
    return [{"name": f"v{index}", "weight": weight, **fields} for index, weight in enumerate(weights, start=1)]


@pytest.fixture
def seed_config(business):
    return AutoEngagementConfigFactory(
        business=business, inactivity_days=10, max_reminders=2, message_template=SEED_TEMPLATE, channels=["wallet"]
    )


@pytest.fixture
def journey_config(business):
    return AutoEngagementConfigFactory(
        business=business, steps=JOURNEY, inactivity_days=14, max_reminders=3, message_template=FIRST
    )


# --- create and read ---


def test_create_with_steps_stores_them_and_mirrors_the_seed_fields(api, business):
    response = api.post(URL, {"steps": JOURNEY, "channels": ["wallet", "email", "sms", "push"]}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["steps"] == JOURNEY
    assert (body["inactivity_days"], body["message_template"], body["max_reminders"]) == (14, FIRST, 3)
    config = AutoEngagementConfig.objects.get(business=business)
    assert config.steps == JOURNEY
    assert (config.inactivity_days, config.message_template, config.max_reminders) == (14, FIRST, 3)


def test_get_returns_the_journey_with_the_mirrored_fields(api, journey_config):
    body = api.get(URL).json()
    assert body["steps"] == JOURNEY
    assert (body["inactivity_days"], body["message_template"], body["max_reminders"]) == (14, FIRST, 3)


def test_a_config_without_steps_has_no_steps_key(api, seed_config):
    # The key set of a config without a journey stays the seed's (tests/autoengagement/test_api_config.py pins it).
    assert "steps" not in api.get(URL).json()
    created = api.post(URL, {"steps": None, "inactivity_days": 5}, format="json")
    assert "steps" not in created.json()


def test_create_with_null_steps_is_a_config_without_a_journey(api, business):
    response = api.post(URL, {"steps": None}, format="json")
    assert response.status_code == 201
    assert "steps" not in response.json()
    assert AutoEngagementConfig.objects.get(business=business).steps is None


def test_the_journey_in_the_docs_is_accepted_as_documented(api, business):
    section = DOCS.read_text().split("### Journeys: steps", 1)[1]
    example = json.loads(re.search(r"```json\n(.*?)\n```", section, re.DOTALL).group(1))
    assert len(example["steps"]) == 3
    assert len(example["steps"][0]["variants"]) == 2
    response = api.post(URL, example, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["steps"] == example["steps"]
    assert body["inactivity_days"] == 14
    assert body["max_reminders"] == 3
    assert body["message_template"] == example["steps"][0]["message"]


def test_one_step_journey_with_attribute_placeholders(api, business):
    steps = [{"after_days": 1, "message": {"header": "{attributes.tier|Friend}", "body": "{attributes.points} points"}}]
    response = api.post(URL, {"steps": steps}, format="json")
    assert response.status_code == 201, response.json()
    assert (response.json()["inactivity_days"], response.json()["max_reminders"]) == (1, 1)


def test_limits_are_accepted_at_their_boundaries(api, business):
    steps = [
        _step(
            1,
            message={"header": "h" * 120, "body": "b" * 1000},
            email={"subject": "s" * 200, "text": "t" * 1000, "html": "<p>" + "x" * 99_993 + "</p>"},
            variants=_variants(1, 1, 1, 97),
        ),
        _step(2),
        _step(3),
        _step(4),
        _step(365),
    ]
    response = api.post(URL, {"steps": steps}, format="json")
    assert response.status_code == 201, response.json()
    assert AutoEngagementConfig.objects.get(business=business).steps == steps


# --- every validation error, with its message, and nothing written ---

STEP_ERRORS = [
    ("journey", ["Must be a list of steps, or null."]),
    ({"after_days": 3}, ["Must be a list of steps, or null."]),
    ([], ["Must have 1 to 5 steps (it has 0)."]),
    ([_step(day) for day in range(1, 7)], ["Must have 1 to 5 steps (it has 6)."]),
    (["step"], ["step 1: must be an object."]),
    ([_step(366)], ["step 1: after_days must be an integer from 1 to 365."]),
    ([_step("7")], ["step 1: after_days must be an integer from 1 to 365."]),
    ([_step(7.0)], ["step 1: after_days must be an integer from 1 to 365."]),
    ([_step(True)], ["step 1: after_days must be an integer from 1 to 365."]),
    ([{"message": {"header": "h", "body": "b"}}], ["step 1: after_days must be an integer from 1 to 365."]),
    ([_step(5), _step(5)], ["step 2: after_days must be greater than the previous step's (5)."]),
    ([_step(9), _step(4)], ["step 2: after_days must be greater than the previous step's (9)."]),
    ([{"after_days": 3}], ["step 1: message is required."]),
    ([_step(colour="blue")], ["step 1: unknown key 'colour'."]),
    ([_step(message="hi")], ["step 1, message: must be an object with 'header', 'body'."]),
    ([_step(message={"header": "h"})], ["step 1, message: 'body' is required."]),
    ([_step(message={"header": "", "body": "b"})], ["step 1, message: 'header' may not be empty."]),
    ([_step(message={"header": 3, "body": "b"})], ["step 1, message: 'header' must be a string."]),
    ([_step(message={"header": "h", "body": "b", "footer": "f"})], ["step 1, message: unknown key 'footer'."]),
    (
        [_step(message={"header": "h" * 121, "body": "b"})],
        ["step 1, message: 'header' may have at most 120 characters (it has 121)."],
    ),
    (
        [_step(message={"header": "h", "body": "b" * 1001})],
        ["step 1, message: 'body' may have at most 1000 characters (it has 1001)."],
    ),
    (
        [_step(message={"header": "h", "body": "{points}"})],
        [f"step 1, message: 'body': Unknown placeholder {{points}}; allowed: {ALLOWED}."],
    ),
    (
        [_step(message={"header": "h", "body": "{attributes.tier.name}"})],
        [f"step 1, message: 'body': Unknown placeholder {{attributes.tier.name}}; allowed: {ALLOWED}."],
    ),
    (
        [_step(message={"header": "Hi {first_name", "body": "b"})],
        ["step 1, message: 'header': Unbalanced brace: use braces only around a placeholder such as {first_name}."],
    ),
    ([_step(email={"text": "t"})], ["step 1, email: 'subject' is required."]),
    (
        [_step(email={"subject": "s" * 201, "text": "t"})],
        ["step 1, email: 'subject' may have at most 200 characters (it has 201)."],
    ),
    (
        [_step(email={"subject": "s", "text": "t", "html": "x" * 100_001})],
        ["step 1, email: 'html' may have at most 100000 characters (it has 100001)."],
    ),
    ([_step(email={"subject": "s", "text": "t", "cc": "x"})], ["step 1, email: unknown key 'cc'."]),
    ([_step(sms="hello")], ["step 1, sms: must be an object with 'text'."]),
    ([_step(sms={"text": "  "})], ["step 1, sms: 'text' may not be empty."]),
    ([_step(push={"title": "t"})], ["step 1, push: 'body' is required."]),
    ([_step(wallet={"header": "h", "body": ["b"]})], ["step 1, wallet: 'body' must be a string."]),
    ([_step(variants=_variants(100))], ["step 1: variants must be a list of 2 to 4 variants."]),
    ([_step(variants=_variants(20, 20, 20, 20, 20))], ["step 1: variants must be a list of 2 to 4 variants."]),
    ([_step(variants={"name": "a"})], ["step 1: variants must be a list of 2 to 4 variants."]),
    ([_step(variants=["a", "b"])], ["step 1, variant 1: must be an object.", "step 1, variant 2: must be an object."]),
    ([_step(variants=_variants(50, 40))], ["step 1: variant weights must add up to 100 (they add up to 90)."]),
    ([_step(variants=_variants(0, 50))], ["step 1, variant 1: weight must be an integer from 1 to 99."]),
    ([_step(variants=_variants(100, 1))], ["step 1, variant 1: weight must be an integer from 1 to 99."]),
    (
        [
            _step(
                variants=[
                    {"name": "a", "weight": 50, "message": {"header": "h", "body": ""}},
                    {"name": "b", "weight": 50},
                ]
            )
        ],
        ["step 1, variant 1, message: 'body' may not be empty."],
    ),
    ([_step(variants=_variants(50, 50.0))], ["step 1, variant 2: weight must be an integer from 1 to 99."]),
    (
        [_step(variants=[{"name": "A", "weight": 50}, {"name": "A", "weight": 50}])],
        ["step 1: variant names must be unique in the step."],
    ),
    (
        [_step(variants=[{"name": "-a", "weight": 50}, {"name": "b", "weight": 50}])],
        [
            "step 1, variant 1: name must be 1 to 40 letters, digits, spaces, '_', '.' or '-', starting with a letter "
            "or digit."
        ],
    ),
    (
        [_step(variants=_variants(50, 50, after_days=3))],
        [f"step 1, variant {i}: unknown key 'after_days'." for i in (1, 2)],
    ),
    (
        [_step(), _step(9, variants=[{"name": "a", "weight": 50}, {"name": "b", "weight": 50, "sms": {"text": ""}}])],
        ["step 2, variant 2, sms: 'text' may not be empty."],
    ),
    (
        [_step(9), _step(4, sms={}, variants=_variants(60, 30))],
        [
            "step 2, sms: 'text' is required.",
            "step 2: variant weights must add up to 100 (they add up to 90).",
            "step 2: after_days must be greater than the previous step's (9).",
        ],
    ),
]


@pytest.mark.parametrize(("steps", "messages"), STEP_ERRORS)
def test_each_bad_journey_is_a_400_naming_its_place_and_creates_nothing(api, steps, messages):
    response = api.post(URL, {"steps": steps}, format="json")
    assert response.status_code == 400
    assert response.json() == {"steps": messages}
    assert AutoEngagementConfig.objects.count() == 0


@pytest.mark.parametrize(("steps", "messages"), STEP_ERRORS[:6] + STEP_ERRORS[-3:])
def test_each_bad_journey_is_a_400_and_changes_nothing(api, journey_config, steps, messages):
    before = _state(journey_config)
    response = api.post(URL, {"steps": steps, "run_time": "18:00"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"steps": messages}
    assert _state(journey_config) == before
    assert AutoEngagementConfig.objects.count() == 1


def test_journey_errors_come_with_the_other_fields_errors(api):
    response = api.post(URL, {"steps": [_step(366)], "run_time": "25:00", "colour": "red"}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "steps": ["step 1: after_days must be an integer from 1 to 365."],
        "run_time": ["Must be a 24-hour time HH:MM, from 00:00 to 23:59."],
        "colour": ["Unknown field."],
    }
    assert not AutoEngagementConfig.objects.exists()


# --- the mirrored fields ---

SET_BY_STEPS = "Leave it out, change steps, or set steps to null to choose it yourself."
CONFLICTS = [
    ("inactivity_days", 7, f"Set by steps: the first step's after_days (14). {SET_BY_STEPS}"),
    ("message_template", SEED_TEMPLATE, f"Set by steps: the first step's message. {SET_BY_STEPS}"),
    ("max_reminders", 1, f"Set by steps: the number of steps (3). {SET_BY_STEPS}"),
]


@pytest.mark.parametrize(("field", "value", "message"), CONFLICTS)
def test_a_mirrored_field_set_alongside_steps_to_another_value_is_a_400(api, field, value, message):
    response = api.post(URL, {"steps": JOURNEY, field: value}, format="json")
    assert response.status_code == 400
    assert response.json() == {field: [message]}
    assert AutoEngagementConfig.objects.count() == 0


@pytest.mark.parametrize(("field", "value", "message"), CONFLICTS)
def test_a_mirrored_field_set_over_a_stored_journey_is_a_400_and_changes_nothing(
    api, journey_config, field, value, message
):
    before = _state(journey_config)
    response = api.post(URL, {field: value, "run_time": "18:00"}, format="json")
    assert response.status_code == 400
    assert response.json() == {field: [message]}
    assert _state(journey_config) == before


def test_every_conflicting_field_is_reported_at_once(api, journey_config):
    response = api.post(URL, {field: value for field, value, _ in CONFLICTS}, format="json")
    assert response.status_code == 400
    assert response.json() == {field: [message] for field, _, message in CONFLICTS}


def test_a_mirrored_field_given_the_journeys_own_value_is_accepted(api, journey_config):
    response = api.post(
        URL, {"steps": JOURNEY, "inactivity_days": 14, "message_template": FIRST, "max_reminders": 3}, format="json"
    )
    assert response.status_code == 200, response.json()
    response = api.post(URL, {"inactivity_days": 14, "max_reminders": 3}, format="json")
    assert response.status_code == 200, response.json()


def test_new_steps_replace_the_journey_and_mirror_again(api, seed_config):
    before = _state(seed_config)
    steps = [_step(5, message={"header": "A", "body": "B"}), _step(8), _step(13)]
    response = api.post(URL, {"steps": steps}, format="json")
    assert response.status_code == 200, response.json()
    after = _state(seed_config)
    assert after["steps"] == steps
    assert (after["inactivity_days"], after["message_template"], after["max_reminders"]) == (
        5,
        {"header": "A", "body": "B"},
        3,
    )
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {"steps", "inactivity_days", "message_template", "max_reminders", "updated_at"}

    shorter = [_step(21)]
    response = api.post(URL, {"steps": shorter}, format="json")
    assert response.json()["steps"] == shorter
    assert (response.json()["inactivity_days"], response.json()["max_reminders"]) == (21, 1)
    assert _state(seed_config)["steps"] == shorter


def test_an_update_without_steps_keeps_the_journey(api, journey_config):
    before = _state(journey_config)
    response = api.post(URL, {"channels": ["email", "sms"], "holdout_percent": 10}, format="json")
    assert response.status_code == 200
    assert response.json()["steps"] == JOURNEY
    after = _state(journey_config)
    assert {key for key in before if before[key] != after[key]} == {"channels", "holdout_percent", "updated_at"}


def test_null_steps_return_to_the_seed_fields_as_they_stand(api, journey_config):
    response = api.post(URL, {"steps": None}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert "steps" not in body
    assert (body["inactivity_days"], body["message_template"], body["max_reminders"]) == (14, FIRST, 3)
    config = AutoEngagementConfig.objects.get()
    assert config.steps is None
    assert (config.inactivity_days, config.message_template, config.max_reminders) == (14, FIRST, 3)
    # Without a journey, the seed fields are the client's again.
    response = api.post(URL, {"inactivity_days": 7, "max_reminders": 1}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["inactivity_days"], response.json()["max_reminders"]) == (7, 1)


def test_null_steps_and_seed_fields_in_one_request(api, journey_config):
    data = {"steps": None, "inactivity_days": 21, "message_template": SEED_TEMPLATE, "max_reminders": 2}
    response = api.post(URL, data, format="json")
    assert response.status_code == 200, response.json()
    config = AutoEngagementConfig.objects.get()
    assert (config.steps, config.inactivity_days, config.message_template, config.max_reminders) == (
        None,
        21,
        SEED_TEMPLATE,
        2,
    )


# --- max_inactivity_days against the journey ---


def test_a_first_step_reaching_the_stored_maximum_is_a_400_on_steps(api, business):
    config = AutoEngagementConfigFactory(business=business, inactivity_days=7, max_inactivity_days=30)
    before = _state(config)
    response = api.post(URL, {"steps": [_step(30), _step(40)]}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "steps": [
            "step 1: after_days must be less than max_inactivity_days (30); change or clear max_inactivity_days too."
        ]
    }
    assert _state(config) == before
    response = api.post(URL, {"steps": [_step(29), _step(40)]}, format="json")
    assert response.status_code == 200, response.json()


def test_max_inactivity_days_is_checked_against_the_first_step(api, journey_config):
    response = api.post(URL, {"max_inactivity_days": 14}, format="json")
    assert response.status_code == 400
    assert response.json() == {"max_inactivity_days": ["Must be greater than inactivity_days (14)."]}
    response = api.post(URL, {"steps": [_step(3)], "max_inactivity_days": 4}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["inactivity_days"], response.json()["max_inactivity_days"]) == (3, 4)


# --- the service checks the same rules itself ---


def test_the_service_refuses_a_conflicting_mirrored_field_and_writes_nothing(business):
    with pytest.raises(ValidationError) as caught:
        config_upsert(business=business, data={"steps": JOURNEY, "max_reminders": 5, "run_time": "25:00"})
    assert set(caught.value.message_dict) == {"max_reminders", "run_time"}
    assert not AutoEngagementConfig.objects.exists()


def test_the_service_mirrors_the_journey(business):
    config, created = config_upsert(business=business, data={"steps": copy.deepcopy(JOURNEY)})
    assert created
    config.refresh_from_db()
    assert (config.inactivity_days, config.message_template, config.max_reminders) == (14, FIRST, 3)


# --- tenant isolation ---


def test_a_business_never_reads_or_changes_another_businesss_journey(api, journey_config, other_api, other_business):
    before = _state(journey_config)
    assert other_api.get(URL).status_code == 404
    response = other_api.post(URL, {"steps": [_step(2)]}, format="json")
    assert response.status_code == 201
    assert response.json()["business_id"] == other_business.business_id
    assert other_api.post(URL, {"steps": None}, format="json").status_code == 200
    assert _state(journey_config) == before
    assert api.get(URL).json()["steps"] == JOURNEY


# --- the time zone of a new config ---


def test_a_new_config_takes_its_businesss_time_zone(api, business):
    business.timezone = "Europe/Paris"
    business.save()
    response = api.post(URL, {}, format="json")
    assert response.status_code == 201
    assert response.json()["timezone"] == "Europe/Paris"
    assert AutoEngagementConfig.objects.get().timezone == "Europe/Paris"


def test_a_given_time_zone_wins_and_updates_keep_the_stored_one(api, business):
    business.timezone = "Europe/Paris"
    business.save()
    assert api.post(URL, {"timezone": "Asia/Kathmandu"}, format="json").json()["timezone"] == "Asia/Kathmandu"
    assert api.post(URL, {"run_time": "10:00"}, format="json").json()["timezone"] == "Asia/Kathmandu"


def test_a_business_with_an_unusable_time_zone_gets_utc():
    business = BusinessFactory(timezone="Mars/Olympus_Mons")
    config, _created = config_upsert(business=business, data={})
    assert config.timezone == "UTC"
