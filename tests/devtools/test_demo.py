"""seed_demo --simulate-days: a few weeks played through the real services tell the results story."""

import io
import json

import pytest
from django.core.management import call_command
from django.test.utils import override_settings

from autoengagement.stats import engagement_stats
from devtools.demo import DEMO_BUSINESS_ID, DEMO_HOLDOUT_PERCENT
from notifications.models import NotificationLog
from wallet.models import Business, Customer

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


@override_settings(AUTO_ENGAGEMENT_CHUNK_SIZE=500)
def test_simulated_weeks_show_a_positive_uplift_and_seeding_again_changes_nothing():
    text = seed("--simulate-days", "28")
    assert "Simulated 27 daily runs over the last 28 days" in text
    business = Business.objects.get(business_id=DEMO_BUSINESS_ID)
    assert business.auto_engagement_config.holdout_percent == DEMO_HOLDOUT_PERCENT
    result = engagement_stats(business=business)
    assert result.reached > 100 and result.holdout > 20
    assert result.reactivation_rate["reached"] > result.reactivation_rate["holdout"] > 0
    assert result.uplift is not None and 0 < result.uplift.ci95_low < result.uplift.estimate < result.uplift.ci95_high
    assert sum(point.sent for point in result.daily) > 0
    # A customer reached and back in two spells counts on both days, once among distinct customers.
    assert sum(point.reactivated for point in result.daily) >= result.reactivated["reached"] > 0

    counts = (Customer.objects.count(), NotificationLog.objects.count())
    assert "Nothing created" in seed("--simulate-days", "28")
    assert (Customer.objects.count(), NotificationLog.objects.count()) == counts
    out = io.StringIO()
    call_command("run_auto_engagement", "--business", DEMO_BUSINESS_ID, "--format", "json", stdout=out)
    call_command(
        "run_auto_engagement", "--business", DEMO_BUSINESS_ID, "--format", "json", stdout=(again := io.StringIO())
    )
    assert '"total_notified": 0' in again.getvalue()
    assert '"total_holdout": 0' in again.getvalue()


def test_bad_simulate_days_is_a_usage_error():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError) as excinfo:
        seed("--simulate-days", "-1")
    assert excinfo.value.returncode == 2
    assert not Business.objects.exists()


def test_engagement_stats_command_prints_the_summary_and_the_api_json():
    from tests.autoengagement.datasets import build_dataset

    business = Business.objects.create(name="Shop", email="shop@example.com", timezone="Europe/Paris")
    build_dataset(business)
    args = ["--business", business.business_id, "--date-from", "2026-03-02", "--date-to", "2026-03-04"]
    out = io.StringIO()
    call_command("engagement_stats", *args, stdout=out)
    assert out.getvalue().strip() == (
        "2026-03-02 to 2026-03-04 (Europe/Paris): 70 reached, 56 came back (80.0%); 80 held out, 48 came back "
        "(60.0%); uplift +20.0 points, 95% CI +5.2 to +33.4"
    )
    out = io.StringIO()
    call_command("engagement_stats", *args, "--format", "json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["uplift"] == {"estimate": 0.2, "ci95_low": 0.0524, "ci95_high": 0.3339}
    assert len(data["daily"]) == 3
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("engagement_stats", "--date-from", "2026-03-05", "--date-to", "2026-03-04", stdout=io.StringIO())
