"""The admin results pages through Django's test client: links, numbers, charts, permissions, bad dates."""

import datetime as dt
import re

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from autoengagement.charts import daily_chart_svg, uplift_chart_svg, uplift_ticks
from autoengagement.stats import DailyPoint, Uplift
from tests.autoengagement.datasets import WINDOW, build_dataset, build_journey_dataset
from tests.factories import AutoEngagementConfigFactory, BusinessFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def config():
    business = BusinessFactory(timezone="Europe/Paris")
    build_dataset(business)
    return business.auto_engagement_config


def test_the_change_page_links_to_the_results_page(admin_client, config):
    url = reverse("admin:autoengagement_autoengagementconfig_results", args=[config.pk])
    page = admin_client.get(reverse("admin:autoengagement_autoengagementconfig_change", args=[config.pk]))
    assert f'href="{url}"' in page.content.decode()
    listing = admin_client.get(reverse("admin:autoengagement_autoengagementconfig_changelist"))
    assert f'href="{reverse("admin:autoengagement_autoengagementconfig_results_all")}"' in listing.content.decode()


def test_the_config_results_page_shows_the_api_numbers_and_draws_them(admin_client, config):
    response = admin_client.get(reverse("admin:autoengagement_autoengagementconfig_results", args=[config.pk]), WINDOW)
    assert response.status_code == 200
    html = response.content.decode()
    result = response.context["stats"]
    assert (result.reached, result.holdout, result.reactivated) == (70, 80, {"reached": 56, "holdout": 48})
    assert '<div class="value" id="figure-uplift">+20.0 pts</div>' in html
    assert "95% CI +5.2 to +33.4 pts" in html
    assert html.count('class="point point-sent"') == 3
    assert 'data-date="2026-03-02" data-value="70"' in html
    assert 'id="uplift-chart"' in html and 'class="interval"' in html
    assert "<script" not in html.split('id="content-main"')[1]  # charts are plain SVG


def test_the_all_businesses_page_adds_every_business_up(admin_client, config):
    build_dataset(BusinessFactory(timezone="Europe/Paris"))
    response = admin_client.get(
        reverse("admin:autoengagement_autoengagementconfig_results_all"),
        {"date_from": "2026-03-01", "date_to": "2026-03-05"},
    )
    assert response.status_code == 200
    result = response.context["stats"]
    assert (result.timezone, result.reached, result.holdout) == (
        "UTC",
        2 * 72,
        160,
    )  # the 2 edge rows of each fall on these UTC days


def test_a_bad_date_shows_the_error_and_the_default_window(admin_client, config):
    response = admin_client.get(
        reverse("admin:autoengagement_autoengagementconfig_results", args=[config.pk]), {"date_from": "nope"}
    )
    assert response.status_code == 200
    assert "date_from" in response.context["errors"]
    assert len(response.context["stats"].daily) == 30


def test_results_pages_need_staff_with_view_permission(client, config):
    url = reverse("admin:autoengagement_autoengagementconfig_results", args=[config.pk])
    assert client.get(url).status_code == 302  # to the login page
    User.objects.create_user("clerk", password="pw-123456789", is_staff=True)
    client.login(username="clerk", password="pw-123456789")
    assert client.get(url).status_code == 403
    assert client.get(reverse("admin:autoengagement_autoengagementconfig_results_all")).status_code == 403


def test_an_unknown_config_is_a_404(admin_client):
    AutoEngagementConfigFactory()
    assert admin_client.get("/admin/autoengagement/autoengagementconfig/999999/results/").status_code == 404


def test_charts_draw_one_point_per_day_and_series_and_say_when_there_is_no_uplift():
    days = [DailyPoint(dt.date(2026, 3, 1) + dt.timedelta(days=i), sent=i, failed=1, reactivated=0) for i in range(5)]
    svg = daily_chart_svg(days)
    assert svg.count("<circle") == 15
    assert svg.startswith('<svg id="daily-chart"') and svg.endswith("</svg>")
    assert "No uplift yet" in uplift_chart_svg(None)
    assert 'class="estimate"' in uplift_chart_svg(Uplift(0.1, -0.05, 0.25))
    assert daily_chart_svg([]).count("<circle") == 0


@pytest.mark.parametrize(
    ("reach_points", "ticks"),
    [(25.9, (10, 3)), (38.0, (10, 4)), (3.0, (1, 5)), (12.0, (5, 3)), (100.0, (20, 5)), (0.0, (1, 5)), (47.0, (10, 5))],
)
def test_the_uplift_axis_has_round_ticks_that_cover_the_interval(reach_points, ticks):
    assert uplift_ticks(reach_points) == ticks


def test_the_uplift_chart_labels_its_ticks_with_round_points():
    svg = uplift_chart_svg(Uplift(0.0, -0.259, 0.117))
    labels = re.findall(r">([+-]\d+) pts</text>", svg)
    assert labels == ["-30", "-20", "-10", "+0", "+10", "+20", "+30"]


def _change_form_data(admin_client, config) -> tuple[str, dict]:
    url = reverse("admin:autoengagement_autoengagementconfig_change", args=[config.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {}
    for name in form.fields:
        value = form[name].value()
        if value is None:
            continue
        data[name] = value
    # The message template's two boxes and the Journey's management form (autoengagement.admin_forms).
    header, body = form.fields["message_template"].widget.decompress(data.pop("message_template"))
    data.update({"message_template_header": header, "message_template_body": body})
    data.update({f"steps-{key}": value for key, value in form.journey.management_form.initial.items()})
    return url, data


def test_staff_set_holdout_percent_and_attribution_days_in_admin_within_their_ranges(admin_client, config):
    url, data = _change_form_data(admin_client, config)
    response = admin_client.post(url, {**data, "holdout_percent": 51, "attribution_days": 91})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"holdout_percent", "attribution_days"}
    response = admin_client.post(url, {**data, "holdout_percent": 25, "attribution_days": 30})
    assert response.status_code == 302, response.context["adminform"].form.errors
    config.refresh_from_db()
    assert (config.holdout_percent, config.attribution_days) == (25, 30)


def test_the_results_page_has_a_table_per_step_of_its_variants_with_the_best_marked(admin_client):
    business = BusinessFactory(timezone="Europe/Paris")
    build_journey_dataset(business)
    url = reverse("admin:autoengagement_autoengagementconfig_results", args=[business.auto_engagement_config.pk])
    html = admin_client.get(url, WINDOW).content.decode()
    step_1 = html.split('<table id="step-1-variants"')[1].split("</table>")[0]
    step_2 = html.split('<table id="step-2-variants"')[1].split("</table>")[0]
    assert "<th>vs short</th>" in step_1 and "<th>vs control</th>" in step_2
    assert _cells(step_1) == [
        ["short best", "70", "56", "80.0%", "+20.0 pts (95% CI +5.2 to +33.4)", "first variant"],
        ["long", "80", "48", "60.0%", "+0.0 pts (95% CI -14.9 to +14.9)", "-20.0 pts (95% CI -33.4 to -5.2)"],
    ]
    assert _cells(step_2) == [
        ["control", "10", "3", "30.0%", "-30.0 pts (95% CI -51.7 to +2.2)", "first variant"],
        ["offer best", "10", "9", "90.0%", "+30.0 pts (95% CI -2.0 to +43.7)", "+60.0 pts (95% CI +17.1 to +80.9)"],
    ]
    assert step_1.count('class="best-variant"') == step_2.count('class="best-variant"') == 1
    assert "Step 1: best short" in html and "Step 2: best offer" in html


def test_no_step_table_without_journeys(admin_client, config):
    url = reverse("admin:autoengagement_autoengagementconfig_results", args=[config.pk])
    html = admin_client.get(url, WINDOW).content.decode()
    assert "step-variants" not in html.split('id="content-main"')[1]


def _cells(table: str) -> list[list[str]]:
    """The body rows' cells as text (tags dropped, whitespace collapsed)."""
    rows = table.split("<tbody>")[1].split("<tr")[1:]
    return [[" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in row.split("<td>")[1:]] for row in rows]
