"""GET /api/auto-engagement/stats per journey step and variant ("steps"): every number of a hand-built journey
whose variants are Newcombe's worked examples, the order of steps and variants, when "steps" is in the body at all,
credits kept exact in the summary per variant, and the queries."""

import datetime as dt
import io
import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from autoengagement.models import AutoEngagementConfig, ResultsDay
from autoengagement.services import results
from autoengagement.stats import REACHED_DEFINITION, StepResult, Uplift, VariantResult, best_variant, engagement_stats
from notifications.models import NotificationLog
from tests.autoengagement.datasets import (
    DAY_1,
    DAY_3,
    JOURNEY_STEPS,
    WINDOW,
    ZONE,
    build_journey_dataset,
    customers_of,
    stats_row,
)
from tests.factories import AutoEngagementConfigFactory, BusinessFactory, save_logs
from wallet.services import record_visits

pytestmark = pytest.mark.django_db

URL = "/api/auto-engagement/stats"
WINDOW_ARGS = ("--date-from", "2026-03-02", "--date-to", "2026-03-04")
S = NotificationLog.Status


def _uplift(estimate, low, high):
    return {"estimate": estimate, "ci95_low": low, "ci95_high": high}


# Newcombe R.G. (1998), Statistics in Medicine 17:873-890, Table II, method 10 (hybrid score): example (a) 56/70 -
# 48/80 is 0.0524 to 0.3339, example (b) 9/10 - 3/10 is 0.1705 to 0.8090 (the R package propint's tests,
# m-Py/propint tests/testthat/test_Two_Independent_Props_CI.R, check the same two values as reported in the paper).
# A difference taken the other way round is the same interval mirrored: 48/80 - 56/70 is -0.3339 to -0.0524. The
# intervals against the holdout group that the paper does not print (48/80, 3/10 and 9/10 against 48/80; 116/150
# against 48/80) were computed independently of autoengagement.stats from the Wilson limits
# (2np + z^2 +- z sqrt(z^2 + 4np(1-p))) / (2(n + z^2)).
EXPECTED_STEPS = [
    {
        "step": 1,
        "variants": [
            {
                "name": "short",
                "reached": 70,
                "reactivated": 56,
                "rate": 0.8,
                "uplift": _uplift(0.2, 0.0524, 0.3339),  # example (a)
                "vs_first": None,
            },
            {
                "name": "long",
                "reached": 80,
                "reactivated": 48,
                "rate": 0.6,
                "uplift": _uplift(0.0, -0.1486, 0.1486),  # the holdout's own rate: symmetric about zero
                "vs_first": _uplift(-0.2, -0.3339, -0.0524),  # example (a) mirrored
            },
        ],
    },
    {
        "step": 2,
        "variants": [
            {
                "name": "control",
                "reached": 10,
                "reactivated": 3,
                "rate": 0.3,
                "uplift": _uplift(-0.3, -0.5168, 0.0224),
                "vs_first": None,
            },
            {
                "name": "offer",
                "reached": 10,
                "reactivated": 9,
                "rate": 0.9,
                "uplift": _uplift(0.3, -0.0203, 0.4369),
                "vs_first": _uplift(0.6, 0.1705, 0.809),  # example (b)
            },
        ],
    },
]

EXPECTED = {
    "date_from": "2026-03-02",
    "date_to": "2026-03-04",
    "timezone": ZONE,
    "channels": {"wallet": {"sent": 170, "holdout": 80, "failed": 1, "skipped": 1}},
    "delivered": {"wallet": 0},
    # Step 2 reached customers step 1 had reached: 150 distinct, 56 + 48 back after step 1 and 3 + 9 after step 2.
    "reached": 150,
    "reached_definition": REACHED_DEFINITION,
    "holdout": 80,
    "reactivated": {"reached": 116, "holdout": 48},
    "reactivation_rate": {"reached": 0.7733, "holdout": 0.6},
    "uplift": _uplift(0.1733, 0.049, 0.2981),
    "daily": [
        {"date": "2026-03-02", "sent": 150, "failed": 0, "reactivated": 104},
        {"date": "2026-03-03", "sent": 0, "failed": 0, "reactivated": 0},
        {"date": "2026-03-04", "sent": 20, "failed": 1, "reactivated": 12},
    ],
    "steps": EXPECTED_STEPS,
}


@pytest.fixture(params=["counted from the log", "summarised"])
def journey(request, business):
    """The hand-built journey, its days stale (as the writers leave them) or refreshed into the summary."""
    business.timezone = ZONE
    business.save()
    build_journey_dataset(business)
    if request.param == "summarised":
        assert results.refresh_stale_days() == 3  # 2, 4 and 5 March
        assert not ResultsDay.objects.filter(stale=True).exists()
    return business


def test_every_number_per_step_and_variant(api, journey):
    response = api.get(URL, WINDOW)
    assert response.status_code == 200
    assert response.json() == EXPECTED


def test_the_journey_adds_no_query(journey):
    """The config's journey is read in the statement that finds the stale days: still 3 queries summarised, 5 with
    stale days, as without journeys (tests/autoengagement/test_api_stats.py)."""
    expected = 5 if ResultsDay.objects.filter(business=journey, stale=True).exists() else 3
    journey = type(journey).objects.get(pk=journey.pk)  # no config cached on the instance
    with CaptureQueriesContext(connection) as queries:
        result = engagement_stats(business=journey, date_from=dt.date(2026, 3, 2), date_to=dt.date(2026, 3, 4))
    assert len(queries) == expected
    assert [step.step for step in result.steps] == [1, 2]


def test_visits_credited_after_the_summary_keep_every_variant_exact(api, business):
    """The same journey with no credit yet, summarised; then the visits recorded: the credits are counted into the
    summary per step and variant (no day left stale) and the numbers are those of the credited dataset."""
    business.timezone = ZONE
    business.save()
    groups = build_journey_dataset(business, credited=False)
    results.refresh_stale_days()
    back_1, back_2 = DAY_1 + dt.timedelta(days=1), DAY_3 + dt.timedelta(days=1)
    visits = [(customer, back_1) for customer in groups["short"][:56] + groups["long"][:48] + groups["holdout"][:48]]
    visits += [(customer, back_2) for customer in groups["control"][:3] + groups["offer"][:9]]
    visits.append((groups["extra"][2], DAY_3 + dt.timedelta(days=2)))
    record_visits(business=business, visits=visits, now=DAY_3 + dt.timedelta(days=3))
    assert not ResultsDay.objects.filter(stale=True).exists()  # counted into the summary, not left to a refresh
    assert api.get(URL, WINDOW).json() == EXPECTED


def test_without_a_config_with_steps_variants_are_ordered_by_name(api, journey):
    AutoEngagementConfig.objects.filter(business=journey).update(steps=None)
    steps = api.get(URL, WINDOW).json()["steps"]
    assert [[variant["name"] for variant in step["variants"]] for step in steps] == [
        ["long", "short"],
        ["control", "offer"],
    ]
    long, short = steps[0]["variants"]
    assert (long["vs_first"], short["vs_first"]) == (None, _uplift(0.2, 0.0524, 0.3339))  # now against "long"
    assert short["uplift"] == _uplift(0.2, 0.0524, 0.3339)  # the holdout comparison does not depend on the order


def test_the_config_order_comes_first_then_variants_and_steps_it_no_longer_has(api, journey):
    """A journey edited since: its steps and variants in its order (with zeroes for those nobody was reached by in
    the window), then the window's other variants by name, and its other steps by number."""
    edited = [
        {**JOURNEY_STEPS[0], "variants": [{"name": "new", "weight": 50}, {"name": "long", "weight": 50}]},
    ]
    AutoEngagementConfig.objects.filter(business=journey).update(steps=edited)
    steps = api.get(URL, WINDOW).json()["steps"]
    assert [(step["step"], [v["name"] for v in step["variants"]]) for step in steps] == [
        (1, ["new", "long", "short"]),
        (2, ["control", "offer"]),
    ]
    new, long, short = steps[0]["variants"]
    assert new == {"name": "new", "reached": 0, "reactivated": 0, "rate": None, "uplift": None, "vs_first": None}
    assert (long["vs_first"], short["vs_first"]) == (None, None)  # the first variant reached nobody
    assert (long["reached"], short["reached"]) == (80, 70)


def test_a_config_with_steps_lists_every_step_and_variant_with_no_rows(api, business):
    AutoEngagementConfigFactory(business=business, steps=JOURNEY_STEPS)
    steps = api.get(URL, WINDOW).json()["steps"]
    empty = {"reached": 0, "reactivated": 0, "rate": None, "uplift": None, "vs_first": None}
    assert steps == [
        {"step": 1, "variants": [{"name": "short", **empty}, {"name": "long", **empty}]},
        {"step": 2, "variants": [{"name": "control", **empty}, {"name": "offer", **empty}]},
    ]


def test_a_step_without_variants_has_one_variant_named_empty(api, business):
    steps = [{**JOURNEY_STEPS[0], "variants": None}, JOURNEY_STEPS[1]]
    steps[0].pop("variants")
    config = AutoEngagementConfigFactory(business=business, steps=steps)
    business.timezone = ZONE
    business.save()
    first, second = customers_of(business, 2)
    save_logs(
        [
            stats_row(config, first, "wallet", S.SENT, DAY_1, reactivated_at=DAY_3),
            stats_row(config, second, "wallet", S.HOLDOUT, DAY_1),
        ]
    )
    step_1, step_2 = api.get(URL, WINDOW).json()["steps"]
    assert step_1 == {
        "step": 1,
        "variants": [
            {
                "name": "",
                "reached": 1,
                "reactivated": 1,
                "rate": 1.0,
                "uplift": _uplift(1.0, -0.1221, 1.0),  # 1/1 - 0/1, computed independently as above (clamped at 1)
                "vs_first": None,
            }
        ],
    }
    assert [variant["name"] for variant in step_2["variants"]] == ["control", "offer"]


def test_steps_appear_only_with_journeys(api, business):
    """The seed's shape (no "steps") while the config has no steps and everyone in the window was reached by step 1
    with no variant; "steps" as soon as someone was reached by a later step or a named variant."""
    config = AutoEngagementConfigFactory(business=business)
    business.timezone = ZONE
    business.save()
    first, second, third = customers_of(business, 3)
    save_logs([stats_row(config, first, "wallet", S.SENT, DAY_1)])
    assert "steps" not in api.get(URL, WINDOW).json()
    # A failed or skipped row of a later step reaches nobody: still nothing to report per variant.
    save_logs([stats_row(config, second, "wallet", S.FAILED, DAY_1, step=2)])
    assert "steps" not in api.get(URL, WINDOW).json()
    save_logs([stats_row(config, third, "wallet", S.SENT, DAY_3, step=2)])
    body = api.get(URL, WINDOW).json()
    assert [(step["step"], [(v["name"], v["reached"]) for v in step["variants"]]) for step in body["steps"]] == [
        (1, [("", 1)]),
        (2, [("", 1)]),
    ]
    outside = api.get(URL, {"date_from": "2026-03-02", "date_to": "2026-03-03"}).json()
    assert "steps" not in outside  # the step 2 customer was reached on 4 March


def test_every_business_pools_steps_and_variants_by_name(journey):
    other = BusinessFactory(timezone=ZONE)
    build_journey_dataset(other)
    result = engagement_stats(business=None, date_from=dt.date(2026, 3, 2), date_to=dt.date(2026, 3, 4))
    assert [(step.step, [(v.name, v.reached, v.reactivated) for v in step.variants]) for step in result.steps] == [
        (1, [("long", 160, 96), ("short", 140, 112)]),
        (2, [("control", 20, 6), ("offer", 20, 18)]),
    ]


def test_every_business_reports_steps_when_any_config_has_them(business):
    config = AutoEngagementConfigFactory(business=business)
    (customer,) = customers_of(business, 1)
    save_logs([stats_row(config, customer, "wallet", S.SENT, DAY_1)])
    window = {"date_from": dt.date(2026, 3, 1), "date_to": dt.date(2026, 3, 5)}
    assert engagement_stats(business=None, **window).steps is None
    AutoEngagementConfigFactory(business=BusinessFactory(), steps=JOURNEY_STEPS)
    steps = engagement_stats(business=None, **window).steps
    assert [(step.step, [(v.name, v.reached) for v in step.variants]) for step in steps] == [(1, [("", 1)])]


def _variant(name, rate, vs_first=None):
    return VariantResult(name=name, reached=10, reactivated=0, rate=rate, uplift=None, vs_first=vs_first)


def test_the_best_variant_is_marked_only_when_its_interval_against_the_first_excludes_zero():
    first, better, worse = _variant("a", 0.3), Uplift(0.6, 0.17, 0.81), Uplift(-0.2, -0.33, -0.05)
    assert best_variant(StepResult(1, [first, _variant("b", 0.9, better)])) == "b"
    assert best_variant(StepResult(1, [first, _variant("b", 0.9, Uplift(0.6, -0.01, 0.81))])) is None  # not sure
    assert best_variant(StepResult(1, [_variant("a", 0.8), _variant("b", 0.6, worse)])) == "a"  # the first wins
    assert best_variant(StepResult(1, [_variant("a", 0.8), _variant("b", 0.6, worse), _variant("c", 0.7)])) is None
    assert best_variant(StepResult(1, [first, _variant("b", 0.9, better), _variant("c", 0.9, better)])) is None  # tie
    assert best_variant(StepResult(1, [_variant("a", 0.8)])) is None  # nothing to compare


def test_the_command_prints_each_step_and_variant(journey):
    out = io.StringIO()
    call_command("engagement_stats", "--business", journey.business_id, *WINDOW_ARGS, stdout=out)
    assert out.getvalue().splitlines()[1:] == [
        "step 1:",
        "  short: 70 reached, 56 came back (80.0%); vs holdout +20.0 points, 95% CI +5.2 to +33.4; first variant "
        "[best]",
        "  long: 80 reached, 48 came back (60.0%); vs holdout +0.0 points, 95% CI -14.9 to +14.9; vs short -20.0 "
        "points, 95% CI -33.4 to -5.2",
        "  best: short, above every other variant (each one's 95% CI against it lies below zero)",
        "step 2:",
        "  control: 10 reached, 3 came back (30.0%); vs holdout -30.0 points, 95% CI -51.7 to +2.2; first variant",
        "  offer: 10 reached, 9 came back (90.0%); vs holdout +30.0 points, 95% CI -2.0 to +43.7; vs control +60.0 "
        "points, 95% CI +17.1 to +80.9 [best]",
        "  best: offer, +60.0 points over control (95% CI +17.1 to +80.9)",
    ]
    out = io.StringIO()
    call_command("engagement_stats", "--business", journey.business_id, *WINDOW_ARGS, "--format", "json", stdout=out)
    assert json.loads(out.getvalue())["steps"] == EXPECTED_STEPS


def test_the_schema_documents_steps_as_optional():
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    components = schema["components"]["schemas"]
    stats = components["Stats"]
    assert "steps" in stats["properties"] and "steps" not in stats["required"]
    assert set(components["StepResult"]["properties"]) == {"step", "variants"}
    variant = components["VariantResult"]
    assert set(variant["properties"]) == {"name", "reached", "reactivated", "rate", "uplift", "vs_first"}
    assert variant["properties"]["vs_first"].get("nullable") or "oneOf" in variant["properties"]["vs_first"]
