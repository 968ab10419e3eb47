"""The config change form's Journey (autoengagement.admin_forms) through the admin change view and the test client.

Each POST starts from what the change page itself would submit (its form read as a browser reads it: no disabled
field, nothing inside a <template>), so a test changes only what staff would change.
"""

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from autoengagement.admin_forms import JOURNEY_ERROR, route_steps_errors
from autoengagement.models import AutoEngagementConfig
from tests.factories import AutoEngagementConfigFactory, BusinessFactory

pytestmark = pytest.mark.django_db

CONTENT_KEYS = {
    "message": ("header", "body"),
    "wallet": ("header", "body"),
    "email": ("subject", "text", "html"),
    "sms": ("text",),
    "push": ("title", "body"),
}
THREE_STEPS = [
    {
        "after_days": 3,
        "message": {"header": "We miss you, {first_name}", "body": "Come back to {business_name}"},
        "variants": [
            {"name": "plain", "weight": 60},
            {
                "name": "offer",
                "weight": 40,
                "message": {"header": "20% off, {first_name}", "body": "Code {attributes.code|WELCOME}"},
                "email": {"subject": "A gift", "text": "Use {attributes.code|WELCOME}", "html": "<p>Gift</p>"},
            },
        ],
    },
    {
        "after_days": 10,
        "message": {"header": "Still there?", "body": "We kept your points"},
        "email": {"subject": "Your points", "text": "You have {attributes.points|some} points"},
        "sms": {"text": "Your points wait at {business_name}"},
        "push": {"title": "Points", "body": "They wait"},
        "wallet": {"header": "Points", "body": "{attributes.points|Some} points"},
    },
    {"after_days": 30, "message": {"header": "Last call", "body": "Goodbye soon"}},
]


class _PageForm(HTMLParser):
    """The fields a browser submits from the config form: enabled inputs, checked boxes, textareas, selected
    options, and nothing inside a <template> (the blank forms the page's script copies)."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, list[str]] = {}
        self._in_form = False
        self._templates = 0
        self._textarea: list[str] | None = None
        self._select: str | None = None

    def _add(self, name: str, value: str) -> None:
        self.data.setdefault(name, []).append(value)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._in_form = a.get("id") == "autoengagementconfig_form"
        if tag == "template":
            self._templates += 1
        if not self._in_form or self._templates or "disabled" in a or (not a.get("name") and tag != "option"):
            return
        if tag == "input":
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self._add(a["name"], a.get("value") or "on")
            elif kind not in ("submit", "button", "file", "image"):
                self._add(a["name"], a.get("value") or "")
        elif tag == "textarea":
            self._textarea = [a["name"], ""]
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select and "selected" in a:
            self._add(self._select, a.get("value") or "")

    def handle_endtag(self, tag):
        if tag == "template":
            self._templates -= 1
        elif tag == "form":
            self._in_form = False
        elif tag == "textarea" and self._textarea:
            name, text = self._textarea
            self._add(name, text.removeprefix("\n"))  # as browsers read a textarea
            self._textarea = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1] += data


def change_url(config) -> str:
    return reverse("admin:autoengagement_autoengagementconfig_change", args=[config.pk])


def page_data(client, config) -> dict[str, list[str]]:
    response = client.get(change_url(config))
    assert response.status_code == 200
    parser = _PageForm()
    parser.feed(response.content.decode())
    assert "steps-TOTAL_FORMS" in parser.data
    return parser.data


def field_row(page: str, name: str) -> str:
    """The admin form row holding the field named `name`, up to the field (its errors come first)."""
    return page.split(f'name="{name}"')[0].rsplit('<div class="form-row', 1)[1]


def _content_data(prefix: str, owner: dict) -> dict[str, list[str]]:
    return {
        f"{prefix}-{content}_{key}": [owner[content][key]]
        for content, keys in CONTENT_KEYS.items()
        if content in owner
        for key in keys
        if key in owner[content]
    }


def journey_data(steps: list[dict], *, initial: int = 0) -> dict[str, list[str]]:
    """The journey's fields as the page's "Add a step" / "Add a variant" buttons and typing would fill them."""
    data = {"steps-TOTAL_FORMS": [str(len(steps))], "steps-INITIAL_FORMS": [str(initial)]}
    for index, step in enumerate(steps):
        prefix = f"steps-{index}"
        variants = step.get("variants", [])
        data[f"{prefix}-after_days"] = [str(step["after_days"])]
        data[f"{prefix}-ORDER"] = [str(index + 1)]
        data.update(_content_data(prefix, step))
        data[f"{prefix}-variants-TOTAL_FORMS"] = [str(len(variants))]
        data[f"{prefix}-variants-INITIAL_FORMS"] = ["0"]
        for number, variant in enumerate(variants):
            at = f"{prefix}-variants-{number}"
            data[f"{at}-name"] = [variant["name"]]
            data[f"{at}-weight"] = [str(variant["weight"])]
            data.update(_content_data(at, variant))
    return data


def with_journey(data: dict[str, list[str]], steps: list[dict]) -> dict[str, list[str]]:
    kept = {name: values for name, values in data.items() if not name.startswith("steps-")}
    return {**kept, **journey_data(steps)}


def test_a_three_step_journey_with_two_variants_is_saved_as_its_json_and_reads_back_the_same(admin_client):
    config = AutoEngagementConfigFactory(channels=["wallet", "email"])
    data = with_journey(page_data(admin_client, config), THREE_STEPS)

    response = admin_client.post(change_url(config), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    config.refresh_from_db()
    assert config.steps == THREE_STEPS
    # The seed fields follow the journey (journeys.mirrored_fields).
    assert (config.inactivity_days, config.max_reminders) == (3, 3)
    assert config.message_template == THREE_STEPS[0]["message"]
    assert config.channels == ["wallet", "email"]

    # The page shows the journey as saved: submitting it unchanged saves the same JSON.
    assert admin_client.post(change_url(config), page_data(admin_client, config)).status_code == 302
    config.refresh_from_db()
    assert config.steps == THREE_STEPS
    history = admin_client.get(reverse("admin:autoengagement_autoengagementconfig_history", args=[config.pk]))
    assert "Changed steps." in history.content.decode(), history.content.decode()


def test_line_breaks_are_saved_as_newlines(admin_client):
    config = AutoEngagementConfigFactory()
    data = with_journey(page_data(admin_client, config), THREE_STEPS[2:])
    data["steps-0-message_body"] = ["Goodbye\r\nsoon"]  # as a browser sends a textarea's line break

    assert admin_client.post(change_url(config), data).status_code == 302

    config.refresh_from_db()
    assert config.steps[0]["message"]["body"] == "Goodbye\nsoon"


def test_journey_errors_are_shown_by_their_fields_and_nothing_is_saved(admin_client):
    config = AutoEngagementConfigFactory()
    before = AutoEngagementConfig.objects.filter(pk=config.pk).values().get()
    steps = [
        {
            **THREE_STEPS[0],
            "variants": [
                {"name": "plain", "weight": 60},
                {"name": "offer", "weight": 30, "email": {"subject": "A gift"}},  # weights 90, email without text
            ],
        },
        {**THREE_STEPS[1], "after_days": 3},  # not after the first step
        {"after_days": 30, "message": {"header": "Last call", "body": "You have {points} points"}},
    ]

    response = admin_client.post(change_url(config), with_journey(page_data(admin_client, config), steps))

    assert response.status_code == 200
    form = response.context["adminform"].form
    first, second, third = form.journey.forms
    assert first.non_field_errors() == ["Variant weights must add up to 100 (they add up to 90)."]
    assert first.variants.forms[1].errors == {"email_text": ["'text' is required."]}
    assert second.errors == {"after_days": ["after_days must be greater than the previous step's (3)."]}
    assert list(third.errors) == ["message_body"]
    assert third.errors["message_body"][0].startswith("'body': Unknown placeholder {points}")
    assert JOURNEY_ERROR in form.non_field_errors()
    page = response.content.decode()
    assert "Please correct the error" in page
    # Each error is rendered in its field's row, and the step's by its variants.
    assert "&#x27;text&#x27; is required." in field_row(page, "steps-0-variants-1-email_text")
    assert "greater than the previous step" in field_row(page, "steps-1-after_days")
    assert "Unknown placeholder {points}" in field_row(page, "steps-2-message_body")
    variants = page.split('name="steps-0-variants-TOTAL_FORMS"')[1].split('name="steps-0-variants-0-name"')[0]
    assert "Variant weights must add up to 100" in variants
    assert AutoEngagementConfig.objects.filter(pk=config.pk).values().get() == before


def test_field_errors_of_a_step_and_a_variant_are_shown_and_nothing_is_saved(admin_client):
    config = AutoEngagementConfigFactory()
    data = with_journey(page_data(admin_client, config), THREE_STEPS[:1])
    data["steps-0-after_days"] = ["soon"]
    data["steps-0-variants-0-weight"] = ["0"]
    data["steps-0-variants-1-name"] = ["-bad"]

    response = admin_client.post(change_url(config), data)

    assert response.status_code == 200
    step = response.context["adminform"].form.journey.forms[0]
    assert step.errors["after_days"] == ["Enter a whole number."]
    assert step.variants.forms[0].errors["weight"] == ["Ensure this value is greater than or equal to 1."]
    assert step.variants.is_valid() is False
    config.refresh_from_db()
    assert config.steps is None

    data["steps-0-after_days"] = ["3"]
    data["steps-0-variants-0-weight"] = ["60"]
    response = admin_client.post(change_url(config), data)  # the name is steps_errors' to judge
    variant = response.context["adminform"].form.journey.forms[0].variants.forms[1]
    assert variant.errors["name"][0].startswith("name must be 1 to 40 letters")
    config.refresh_from_db()
    assert config.steps is None


def test_a_config_is_added_with_its_journey(admin_client):
    business = BusinessFactory()
    add_url = reverse("admin:autoengagement_autoengagementconfig_add")
    parser = _PageForm()
    parser.feed(admin_client.get(add_url).content.decode())
    data = with_journey(parser.data, THREE_STEPS[1:])
    data["business"] = [str(business.pk)]

    response = admin_client.post(add_url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    config = AutoEngagementConfig.objects.get(business=business)
    assert config.steps == THREE_STEPS[1:]
    assert (config.inactivity_days, config.max_reminders) == (10, 2)


def test_a_config_without_steps_is_unchanged_by_a_save_that_leaves_the_journey_alone(admin_client):
    config = AutoEngagementConfigFactory(
        inactivity_days=9,
        max_reminders=4,
        message_template={"header": "Hello {first_name}", "body": "See you at {business_name}"},
        channels=["wallet", "sms"],
    )
    data = page_data(admin_client, config)
    assert data["steps-TOTAL_FORMS"] == ["0"]
    assert data["channels"] == ["wallet", "sms"]
    data["run_time"] = ["10:30"]

    assert admin_client.post(change_url(config), data).status_code == 302

    config.refresh_from_db()
    assert config.steps is None
    assert (config.inactivity_days, config.max_reminders, config.run_time) == (9, 4, "10:30")
    assert config.message_template == {"header": "Hello {first_name}", "body": "See you at {business_name}"}
    assert config.channels == ["wallet", "sms"]


def test_with_steps_the_seed_fields_are_read_only_and_follow_the_journey(admin_client):
    config = AutoEngagementConfigFactory(steps=THREE_STEPS, inactivity_days=3, max_reminders=3, max_inactivity_days=40)
    config.message_template = THREE_STEPS[0]["message"]
    config.save()
    data = page_data(admin_client, config)
    assert not {"inactivity_days", "max_reminders", "message_template_header", "message_template_body"} & set(data)
    data["inactivity_days"] = ["20"]  # ignored: the field is disabled
    data["steps-0-after_days"] = ["5"]

    assert admin_client.post(change_url(config), data).status_code == 302

    config.refresh_from_db()
    assert config.steps[0]["after_days"] == 5
    assert config.steps[1:] == THREE_STEPS[1:]
    assert config.inactivity_days == 5

    # max_inactivity_days is checked against the journey's first delay.
    data["steps-0-after_days"] = ["40"]
    data["steps-1-after_days"] = ["41"]
    data["steps-2-after_days"] = ["42"]
    response = admin_client.post(change_url(config), data)
    assert response.context["adminform"].form.errors["max_inactivity_days"] == [
        "Must be greater than inactivity_days (40)."
    ]


def test_steps_are_removed_and_reordered(admin_client):
    config = AutoEngagementConfigFactory(steps=THREE_STEPS)
    data = page_data(admin_client, config)
    data["steps-0-DELETE"] = ["on"]
    # The third step moves before the second, and comes after it in days.
    data["steps-1-ORDER"], data["steps-2-ORDER"] = ["3"], ["2"]
    data["steps-1-after_days"] = ["60"]

    assert admin_client.post(change_url(config), data).status_code == 302

    config.refresh_from_db()
    assert config.steps == [THREE_STEPS[2], {**THREE_STEPS[1], "after_days": 60}]
    assert (config.inactivity_days, config.max_reminders) == (30, 2)

    data = page_data(admin_client, config)
    data["steps-0-DELETE"] = data["steps-1-DELETE"] = ["on"]
    assert admin_client.post(change_url(config), data).status_code == 302
    config.refresh_from_db()
    assert config.steps is None  # back to the seed's one message, as the journey last set it
    assert config.message_template == THREE_STEPS[2]["message"]


def test_a_blank_added_step_or_variant_is_left_out(admin_client):
    config = AutoEngagementConfigFactory()
    data = with_journey(page_data(admin_client, config), THREE_STEPS[2:])
    # A blank step added (renumbered by a move, so its hidden position was set), and a blank variant in each.
    data["steps-TOTAL_FORMS"] = ["2"]
    data["steps-1-ORDER"] = ["2"]
    data["steps-0-variants-TOTAL_FORMS"] = ["1"]
    data["steps-1-variants-TOTAL_FORMS"], data["steps-1-variants-INITIAL_FORMS"] = ["1"], ["0"]

    assert admin_client.post(change_url(config), data).status_code == 302

    config.refresh_from_db()
    assert config.steps == THREE_STEPS[2:]

    # A step left blank but given a variant is not left out: its own fields are missing.
    data["steps-1-variants-0-name"], data["steps-1-variants-0-weight"] = ["alone"], ["50"]
    response = admin_client.post(change_url(config), data)
    assert response.status_code == 200
    assert response.context["adminform"].form.journey.forms[1].errors["after_days"] == ["This field is required."]


def test_channels_are_checkboxes_and_the_message_template_two_boxes(admin_client):
    config = AutoEngagementConfigFactory()
    data = page_data(admin_client, config)
    data["channels"] = ["email", "push"]
    data["message_template_header"] = ["Hi {first_name}"]
    data["message_template_body"] = ["Back at {business_name}?\r\nSee you"]  # a browser's line break

    assert admin_client.post(change_url(config), data).status_code == 302

    config.refresh_from_db()
    assert config.channels == ["email", "push"]
    assert config.message_template == {"header": "Hi {first_name}", "body": "Back at {business_name}?\nSee you"}

    data["channels"] = []
    data["message_template_body"] = ["Back {soon}"]
    response = admin_client.post(change_url(config), data)
    errors = response.context["adminform"].form.errors
    assert errors["channels"] == ["This field is required."]
    assert errors["message_template"][0].startswith("'body': Unknown placeholder {soon}")
    config.refresh_from_db()
    assert config.message_template["body"] == "Back at {business_name}?\nSee you"


def test_a_journey_error_naming_no_form_is_kept_for_the_config_form():
    from autoengagement.admin_forms import StepFormSetFactory

    data = {name: values[0] for name, values in journey_data(THREE_STEPS[2:]).items()}
    formset = StepFormSetFactory(data=data, prefix="steps")
    assert formset.is_valid()
    unplaced = route_steps_errors(formset, ["Must have 1 to 5 steps (it has 6).", "step 4: after_days is wrong."])
    assert unplaced == ["Must have 1 to 5 steps (it has 6).", "step 4: after_days is wrong."]
    route_steps_errors(formset, ["step 1, sms: must be an object with 'text'."])
    assert formset.forms[0].non_field_errors() == ["sms: must be an object with 'text'."]


def test_preview_changes_shows_the_typed_journey_and_saves_nothing(admin_client):
    config = AutoEngagementConfigFactory(channels=["wallet", "email"])
    data = with_journey(page_data(admin_client, config), THREE_STEPS)
    data["_preview"] = ["Preview changes"]

    response = admin_client.post(change_url(config), data)

    assert response.status_code == 200
    config.refresh_from_db()
    assert config.steps is None and config.max_reminders == 1
    preview = response.context["journey_preview"]
    assert [(step.number, [variant.name for variant in step.variants]) for step in preview.steps] == [
        (1, ["plain", "offer"]),
        (2, [""]),
        (3, [""]),
    ]
    wallet = {channel.channel: channel for channel in preview.steps[0].variants[1].channels}["wallet"]
    assert wallet.header == "20% off, Ana"
    page = response.content.decode()
    assert "Your changes, not saved yet" in page and "nothing has been saved yet" in page
    # The form keeps what was typed, so Save then saves it.
    data = with_journey(data, THREE_STEPS)
    del data["_preview"]
    assert admin_client.post(change_url(config), data).status_code == 302
    config.refresh_from_db()
    assert config.steps == THREE_STEPS


def test_preview_changes_of_an_invalid_form_shows_its_errors_and_no_preview_of_them(admin_client):
    config = AutoEngagementConfigFactory(channels=["wallet"])
    bad = [{**THREE_STEPS[2], "after_days": 400}]
    data = {**with_journey(page_data(admin_client, config), bad), "_preview": ["Preview changes"]}

    response = admin_client.post(change_url(config), data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not response.context.get("preview_unsaved")
    # The preview shown is the saved config's: its one message.
    assert [step.number for step in response.context["journey_preview"].steps] == [1]


def test_the_admin_saves_through_the_service_the_api_uses(admin_client, caplog):
    """config_upsert logs every save; a new config left without a time zone takes its business's, as by the API."""
    business = BusinessFactory(timezone="Europe/Paris")
    add_url = reverse("admin:autoengagement_autoengagementconfig_add")
    parser = _PageForm()
    parser.feed(admin_client.get(add_url).content.decode())
    data = {**parser.data, "business": [str(business.pk)], "timezone": [""]}

    with caplog.at_level("INFO", logger="autoengagement.services.config"):
        response = admin_client.post(add_url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    config = AutoEngagementConfig.objects.get(business=business)
    assert config.timezone == "Europe/Paris"
    [record] = [record for record in caplog.records if record.getMessage() == "config saved"]
    assert (record.business_id, record.config_created) == (business.business_id, True)


def test_a_configs_business_cannot_be_changed(admin_client):
    config = AutoEngagementConfigFactory()
    other = BusinessFactory()
    data = {**page_data(admin_client, config), "business": [str(other.pk)]}

    assert admin_client.post(change_url(config), data).status_code == 302

    config.refresh_from_db()
    assert config.business != other
    assert not AutoEngagementConfig.objects.filter(business=other).exists()


def test_the_time_zone_box_suggests_every_zone(admin_client):
    config = AutoEngagementConfigFactory(timezone="Europe/Paris")
    page = admin_client.get(change_url(config)).content.decode()
    box = page.split('name="timezone"')[1].split(">")[0]
    assert 'list="id_timezone-zones"' in box and 'value="Europe/Paris"' in box
    zones = page.split('<datalist id="id_timezone-zones">')[1].split("</datalist>")[0]
    assert '<option value="Europe/Paris">' in zones and '<option value="Pacific/Chatham">' in zones
    assert zones.count("<option") > 400
    business_page = admin_client.get(reverse("admin:wallet_business_change", args=[config.business.pk]))
    assert '<datalist id="id_timezone-zones">' in business_page.content.decode()
