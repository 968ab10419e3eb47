"""seed_demo --simulate-days: a few weeks of a journey played through the real services tell the results story, the
same on every fresh database."""

import datetime as dt
import io
import json
from dataclasses import asdict

import pytest
from django.core.management import call_command
from django.db.models import Count
from django.test.utils import override_settings

from autoengagement.api import StatsSerializer
from autoengagement.services.run import run_due_configs
from autoengagement.stats import best_variant, engagement_stats
from devtools.demo import DEMO_BUSINESS_ID, DEMO_CUSTOMERS, DEMO_HOLDOUT_PERCENT, DEMO_SEED, DEMO_STEPS, seed_demo
from notifications.models import NotificationLog
from wallet.models import Business, Customer

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def run(*args: str) -> dict:
    out = io.StringIO()
    call_command("run_auto_engagement", "--business", DEMO_BUSINESS_ID, "--format", "json", *args, stdout=out)
    return json.loads(out.getvalue())


@override_settings(AUTO_ENGAGEMENT_CHUNK_SIZE=500)
def test_the_demo_journey_has_a_winner_and_today_reaches_a_few_dozen_per_step_then_nobody_new():
    """What `make demo` shows, at its size: the journey, a few dozen customers per step today and none on the
    rerun, and step 1's offer beating the friendly note with an interval above zero."""
    text = seed("--simulate-days", "28")
    assert "Simulated 27 daily runs over the last 28 days" in text
    assert (
        "step 1 after 14 quiet days: variant friendly (50%) 'We miss you, {first_name}!', "
        "variant offer (50%) 'A free pastry, {first_name}'" in text
    )
    assert "step 3 after 60 quiet days: 'Last call, {first_name}'" in text
    business = Business.objects.get(business_id=DEMO_BUSINESS_ID)
    config = business.auto_engagement_config
    assert config.steps == DEMO_STEPS and config.holdout_percent == DEMO_HOLDOUT_PERCENT
    assert f"/admin/autoengagement/autoengagementconfig/{config.pk}/results/" in text
    assert business.customers.filter(attributes__has_key="points").count() > DEMO_CUSTOMERS / 2
    # The simulated days went through the run: every step and both variants were sent, on every channel.
    sent = NotificationLog.objects.filter(status="sent")
    assert set(sent.values_list("step", "variant").distinct()) == {(1, "friendly"), (1, "offer"), (2, ""), (3, "")}
    assert set(sent.values_list("channel", flat=True).distinct()) == {"wallet", "email", "sms", "push"}

    preview = run("--dry-run")["businesses"][0]
    assert set(preview["steps"]) == {"1", "2", "3"} and min(preview["steps"].values()) >= 20, preview["steps"]
    today = run()
    assert today["businesses"][0]["steps"] == preview["steps"]
    assert today["total_notified"] >= 50 and today["total_holdout"] > 0
    again = run()
    assert (again["total_notified"], again["total_holdout"], again["businesses"][0]["audience"]) == (0, 0, 0)

    result = engagement_stats(business=business)
    assert result.uplift is not None and result.uplift.ci95_low > 0
    step_1 = result.steps[0]
    assert [variant.name for variant in step_1.variants] == ["friendly", "offer"]
    assert best_variant(step_1) == "offer"
    offer = step_1.variants[1]
    assert 0 < offer.vs_first.ci95_low < offer.vs_first.estimate
    out = io.StringIO()
    call_command("engagement_stats", "--business", DEMO_BUSINESS_ID, stdout=out)
    assert (
        f"  best: offer, {offer.vs_first.estimate * 100:+.1f} points over friendly "
        f"(95% CI {offer.vs_first.ci95_low * 100:+.1f} to {offer.vs_first.ci95_high * 100:+.1f})"
    ) in out.getvalue().splitlines()

    counts = (Customer.objects.count(), NotificationLog.objects.count())
    assert "Nothing created" in seed("--simulate-days", "28")
    assert (Customer.objects.count(), NotificationLog.objects.count()) == counts


def demo_figures(*, now: dt.datetime, seed: int = DEMO_SEED) -> dict:
    """Every figure the demo shows, seeded as of `now` at a small size: the seeding, the dry run, today's run and
    the rerun, the stats (without their dates), and the log's rows by step, variant, channel and status."""
    seeded = seed_demo(now=now, customers=200, simulate_days=28, seed=seed)
    business_ids = [DEMO_BUSINESS_ID]
    preview = run_due_configs(now=now + dt.timedelta(minutes=1), business_ids=business_ids, dry_run=True)
    today = run_due_configs(now=now + dt.timedelta(minutes=2), business_ids=business_ids)
    again = run_due_configs(now=now + dt.timedelta(minutes=3), business_ids=business_ids)
    stats = StatsSerializer(asdict(engagement_stats(business=seeded.business, now=now))).data
    stats = {key: value for key, value in stats.items() if key not in ("date_from", "date_to", "daily")}
    rows = NotificationLog.objects.values_list("step", "variant", "channel", "status").annotate(count=Count("pk"))
    return {
        "simulation": asdict(seeded.simulation),
        "config_id": seeded.config.config_id,
        "customer_ids": sorted(Customer.objects.values_list("customer_id", flat=True)),
        "runs": [
            {key: value for key, value in summary.as_dict().items() if key != "businesses"}
            for summary in (preview, today, again)
        ],
        "steps today": (preview.outcomes[0].steps, today.outcomes[0].steps),
        "stats": json.loads(json.dumps(stats)),
        "rows": sorted(rows),
    }


@pytest.mark.django_db(transaction=True)
def test_two_runs_on_fresh_databases_give_the_same_figures_whatever_the_day():
    """The seed fixes every figure: the same on a fresh database another day at another time (23:30 in the
    business's zone, the end of summer time among the simulated days), and another seed tells another story."""
    first = demo_figures(now=dt.datetime(2026, 11, 30, 17, 42, 13, 123456, tzinfo=dt.UTC))
    assert first["runs"][1]["total_notified"] > 0 and first["runs"][2]["total_notified"] == 0
    call_command("flush", interactive=False, verbosity=0)
    assert not Customer.objects.exists() and not NotificationLog.objects.exists()
    second = demo_figures(now=dt.datetime(2026, 11, 5, 22, 30, tzinfo=dt.UTC))  # 23:30 in Paris
    assert second == first
    call_command("flush", interactive=False, verbosity=0)
    other = demo_figures(now=dt.datetime(2026, 11, 30, 17, 42, 13, tzinfo=dt.UTC), seed=DEMO_SEED + 1)
    assert other["simulation"] != first["simulation"] and other["config_id"] != first["config_id"]


@pytest.mark.parametrize(
    ("args", "message"),
    [(("--simulate-days", "-1"), "--simulate-days"), (("--customers", "10"), "--customers")],
)
def test_bad_options_are_usage_errors(args, message):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=message) as excinfo:
        seed(*args)
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
