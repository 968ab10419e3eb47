"""Journeys (autoengagement.journeys): the steps' validation, the content each channel gets, variant assignment."""

import datetime as dt
from collections import Counter

import pytest

from autoengagement.journeys import Content, Step, Variant, journey_of, mirrored_fields, steps_errors, variant_for
from autoengagement.services.audience import in_holdout

SPELL = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
THREE_WAY = Step(1, 14, (Variant("A", 50), Variant("B", 30), Variant("C", 20)))
JOURNEY = [
    {
        "after_days": 14,
        "message": {"header": "We miss you, {first_name}", "body": "Come back to {business_name}"},
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
    },
    {"after_days": 60, "message": {"header": "Last call", "body": "Goodbye soon"}},
]


def test_a_valid_journey_has_no_errors_and_null_means_no_journey():
    assert steps_errors(JOURNEY) == []
    assert steps_errors(None) == []


@pytest.mark.parametrize(
    ("steps", "error"),
    [
        ([], "Must have 1 to 5 steps (it has 0)."),
        ([JOURNEY[2]] * 6, "Must have 1 to 5 steps (it has 6)."),
        ({"after_days": 3}, "Must be a list of steps, or null."),
        (["step"], "step 1: must be an object."),
        ([{"message": {"header": "h", "body": "b"}}], "step 1: after_days must be an integer from 1 to 365."),
        ([{"after_days": True, "message": {"header": "h", "body": "b"}}], "step 1: after_days must be an integer"),
        ([{"after_days": 366, "message": {"header": "h", "body": "b"}}], "step 1: after_days must be an integer"),
        ([{"after_days": 3}], "step 1: message is required."),
        ([{"after_days": 3, "message": {"header": "h"}}], "step 1, message: 'body' is required."),
        ([{"after_days": 3, "message": {"header": "h", "body": "b"}, "fax": {}}], "step 1: unknown key 'fax'."),
        (
            [{"after_days": 3, "message": {"header": "h", "body": "{points}"}}],
            "step 1, message: 'body': Unknown placeholder {points}",
        ),
        (
            [
                {
                    "after_days": 3,
                    "message": {"header": "h", "body": "b"},
                    "email": {"subject": "s", "text": "t", "x": 1},
                }
            ],
            "step 1, email: unknown key 'x'.",
        ),
        (
            [{"after_days": 3, "message": {"header": "h", "body": "b"}, "email": {"subject": "s" * 201, "text": "t"}}],
            "step 1, email: 'subject' may have at most 200 characters (it has 201).",
        ),
        (
            [{"after_days": 3, "message": {"header": "h", "body": "b"}, "sms": "hello"}],
            "step 1, sms: must be an object with 'text'.",
        ),
        (
            [{"after_days": 3, "message": {"header": "h", "body": "b"}}, JOURNEY[2] | {"after_days": 3}],
            "step 2: after_days must be greater than the previous step's (3).",
        ),
        (
            [JOURNEY[0] | {"variants": [{"name": "only", "weight": 100}]}],
            "step 1: variants must be a list of 2 to 4 variants.",
        ),
        (
            [JOURNEY[0] | {"variants": [{"name": "a", "weight": 50}, {"name": "a", "weight": 50}]}],
            "step 1: variant names must be unique in the step.",
        ),
        (
            [JOURNEY[0] | {"variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 40}]}],
            "step 1: variant weights must add up to 100 (they add up to 90).",
        ),
        (
            [JOURNEY[0] | {"variants": [{"name": "a", "weight": 100}, {"name": "b", "weight": 0}]}],
            "step 1, variant 1: weight must be an integer from 1 to 99.",
        ),
        (
            [JOURNEY[0] | {"variants": [{"name": "", "weight": 50}, {"name": "b", "weight": 50}]}],
            "step 1, variant 1: name must be 1 to 40 letters",
        ),
        (
            [JOURNEY[0] | {"variants": [{"name": "a", "weight": 50, "after_days": 3}, {"name": "b", "weight": 50}]}],
            "step 1, variant 1: unknown key 'after_days'.",
        ),
    ],
)
def test_each_mistake_is_named_where_it_is(steps, error):
    assert any(message.startswith(error) for message in steps_errors(steps)), steps_errors(steps)


def test_each_channel_gets_its_own_content_or_the_message():
    first, second, third = journey_of(steps=JOURNEY, message_template={}, inactivity_days=7)
    assert (first.number, first.after_days, second.after_days, third.after_days) == (1, 14, 30, 60)
    plain, offer = first.variants
    assert (plain.name, plain.weight, offer.name) == ("plain", 50, "offer")
    assert plain.content("sms") == Content("We miss you, {first_name}", "Come back to {business_name}")
    assert offer.content("wallet") == Content("20% off", "Code {attributes.code|WELCOME}")
    (only,) = second.variants
    assert only.name == ""
    assert only.content("email") == Content("Your points", "You have {attributes.points|some} points", "<p>Hi</p>")
    assert only.content("sms") == Content("", "Your points wait at {business_name}")
    assert only.content("push") == Content("Points", "They wait")
    assert only.content("wallet") == Content("Still there?", "We kept your points")


def test_a_variant_replaces_only_the_objects_it_names():
    step = JOURNEY[1] | {
        "variants": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50, "message": {"header": "B", "body": "b"}}]
    }
    (journey,) = journey_of(steps=[step], message_template={}, inactivity_days=7)
    a, b = journey.variants
    assert b.content("wallet") == Content("B", "b")
    assert (
        b.content("email")
        == a.content("email")
        == Content("Your points", "You have {attributes.points|some} points", "<p>Hi</p>")
    )


def test_a_config_without_steps_is_a_one_step_journey_of_its_message():
    (step,) = journey_of(steps=None, message_template={"header": "H", "body": "B"}, inactivity_days=9)
    assert (step.number, step.after_days, len(step.variants), step.variants[0].name) == (1, 9, 1, "")
    assert {step.variants[0].content(channel) for channel in ("wallet", "email", "sms", "push")} == {Content("H", "B")}


def test_a_journey_sets_the_seed_fields_it_mirrors():
    assert mirrored_fields(JOURNEY) == {
        "inactivity_days": 14,
        "message_template": JOURNEY[0]["message"],
        "max_reminders": 3,
    }


def _assign(step: Step, count: int, *, config_id: str = "aec_x", spell: dt.datetime = SPELL) -> list[str]:
    return [
        variant_for(step, config_id=config_id, customer_id=f"cus_{number}", spell_start=spell).name
        for number in range(count)
    ]


def test_variant_golden_values():
    """Fixed inputs, fixed answers: a change of the hash or its key would move customers between variants."""
    names = [
        variant_for(
            THREE_WAY, config_id="aec_GoldenConfig0000000001", customer_id=f"cus_Golden{n:015d}", spell_start=SPELL
        ).name
        for n in range(12)
    ]
    assert names == ["A", "B", "A", "C", "A", "B", "A", "B", "B", "C", "B", "C"]


def test_variant_shares_follow_the_weights_over_10000_customers():
    shares = Counter(_assign(THREE_WAY, 10_000))
    # Binomial standard deviations: 50, 46 and 40 customers; four of them either side.
    assert abs(shares["A"] - 5000) < 200
    assert abs(shares["B"] - 3000) < 184
    assert abs(shares["C"] - 2000) < 160


def test_the_same_customer_spell_and_step_get_the_same_variant_and_a_new_spell_draws_again():
    assert _assign(THREE_WAY, 200) == _assign(THREE_WAY, 200)
    later = _assign(THREE_WAY, 200, spell=SPELL + dt.timedelta(days=40))
    assert later != _assign(THREE_WAY, 200)
    other_step = Step(2, 30, THREE_WAY.variants)
    assert _assign(other_step, 200) != _assign(THREE_WAY, 200)


def test_variant_is_independent_of_the_holdout_draw():
    """Among held-out and reached customers alike, the variants keep their weights."""
    two_way = Step(1, 14, (Variant("A", 50), Variant("B", 50)))
    by_group: dict[bool, Counter] = {True: Counter(), False: Counter()}
    for number in range(10_000):
        customer_id = f"cus_{number}"
        held = in_holdout(config_id="aec_x", customer_id=customer_id, spell_start=SPELL, holdout_percent=50)
        by_group[held][variant_for(two_way, config_id="aec_x", customer_id=customer_id, spell_start=SPELL).name] += 1
    for counts in by_group.values():
        total = counts["A"] + counts["B"]
        assert abs(counts["A"] / total - 0.5) < 0.03


def test_a_step_without_variants_needs_no_hash():
    (step,) = journey_of(steps=[JOURNEY[2]], message_template={}, inactivity_days=1)
    assert variant_for(step, config_id="aec_x", customer_id="cus_1", spell_start=SPELL).name == ""


def test_an_after_days_out_of_range_is_one_error_not_two():
    errors = steps_errors([{"after_days": 0, "message": {"header": "h", "body": "b"}}])
    assert errors == ["step 1: after_days must be an integer from 1 to 365."]
