"""The audience rules pinned where a plausible slip would otherwise go unnoticed: holdout assignment by exact
golden values, reminders counted as distinct run dates on the run's path and the preview's, and the wallet channel's
pass check by customer."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from autoengagement.services.audience import audience_queryset, in_holdout, iter_audience_chunks
from autoengagement.services.preview import config_preview
from tests.factories import AutoEngagementConfigFactory, CustomerFactory, NotificationLogFactory, WalletPassFactory

NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
SPELL_START = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


def held(percent: int, *, spell_start: dt.datetime = SPELL_START, count: int = 10_000) -> list[int]:
    return [
        n
        for n in range(count)
        if in_holdout(
            config_id="aec_golden", customer_id=f"cus_{n:05d}", spell_start=spell_start, holdout_percent=percent
        )
    ]


def test_holdout_assignment_golden_values():
    """Fixed inputs, fixed groups: 20% keeps exactly 20 of the 100 buckets (21 would hold about 1% more)."""
    twenty = held(20)
    assert len(twenty) == 1961
    assert twenty[:12] == [5, 6, 8, 12, 15, 16, 22, 31, 46, 49, 51, 55]
    assert len(held(21)) == 2072
    assert held(0) == []
    assert len(held(100)) == 10_000


def test_holdout_reads_the_spell_start_as_an_instant_whatever_its_zone():
    assert held(20, spell_start=SPELL_START.astimezone(ZoneInfo("Pacific/Kiritimati")), count=500) == held(
        20, count=500
    )
    assert held(20, spell_start=SPELL_START + dt.timedelta(seconds=1), count=500) != held(20, count=500)


def quiet_customer(config, **fields):
    return CustomerFactory(
        business=config.business, **{"created_at": NOW - 400 * DAY, "last_activity_at": NOW - 60 * DAY, **fields}
    )


def reminded(config, member, days_ago: int, *, channels=("wallet",)) -> None:
    at = NOW - days_ago * DAY
    for channel in channels:
        NotificationLogFactory(config=config, customer=member, created_at=at, run_date=at.date(), channel=channel)


def run_audience(config, chunk_size: int = 10) -> set[int]:
    return {row["pk"] for chunk in iter_audience_chunks(config=config, now=NOW, chunk_size=chunk_size) for row in chunk}


@pytest.mark.django_db
def test_reminders_are_distinct_run_dates_in_the_spell_on_the_runs_path_and_the_previews():
    config = AutoEngagementConfigFactory(inactivity_days=7, max_reminders=3, channels=["wallet", "email"])
    two_dates = quiet_customer(config)
    for days_ago in (40, 20):
        reminded(config, two_dates, days_ago)
    three_dates = quiet_customer(config)
    for days_ago in (40, 30, 20):
        reminded(config, three_dates, days_ago)
    # Three rows, but on two run dates: one day's message went out on two channels.
    two_dates_three_rows = quiet_customer(config)
    reminded(config, two_dates_three_rows, 40)
    reminded(config, two_dates_three_rows, 20, channels=("wallet", "email"))
    # Reminders of an earlier spell do not count, even read with those of a customer quiet for longer.
    earlier_spell = quiet_customer(config)
    for days_ago in (90, 80, 70):
        reminded(config, earlier_spell, days_ago)
    quiet_longer = quiet_customer(config, last_activity_at=NOW - 200 * DAY)

    expected = {two_dates.pk, two_dates_three_rows.pk, earlier_spell.pk, quiet_longer.pk}
    assert run_audience(config) == run_audience(config, chunk_size=2) == expected
    assert set(audience_queryset(config=config, now=NOW).values_list("pk", flat=True)) == expected
    assert config_preview(config=config, now=NOW).audience == len(expected)


@pytest.mark.django_db
def test_the_preview_counts_one_days_reminder_on_several_channels_once():
    config = AutoEngagementConfigFactory(inactivity_days=7, max_reminders=2, channels=["wallet", "email", "sms"])
    member = quiet_customer(config)
    reminded(config, member, 20, channels=("wallet", "email", "sms"))
    assert config_preview(config=config, now=NOW).audience == 1
    assert run_audience(config) == {member.pk}


@pytest.mark.django_db
def test_the_wallet_pass_check_reads_customers_not_pass_ids():
    """A customer whose id is some other customer's pass id has no pass of their own."""
    config = AutoEngagementConfigFactory(inactivity_days=7, channels=["wallet"])
    with_pass = quiet_customer(config)
    pass_id = WalletPassFactory(customer=with_pass, pk=9_000_001).pk
    without_pass = quiet_customer(config, pk=pass_id)
    flags = {
        row["pk"]: row["has_wallet_pass"]
        for chunk in iter_audience_chunks(config=config, now=NOW, chunk_size=10)
        for row in chunk
    }
    assert flags == {with_pass.pk: True, without_pass.pk: False}
    assert config_preview(config=config, now=NOW).reachable["wallet"] == 1
