"""The audience rules pinned where a plausible slip would otherwise go unnoticed: holdout assignment by exact
golden values (whatever the machine's zone), reminders counted as distinct run dates on the run's path and the
preview's, the edges of the spell and of the spacing to the instant, which rows count, the wallet channel's pass check
by customer, and a part's key range."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from autoengagement.services.audience import audience_queryset, in_holdout, iter_audience_chunks, spell_logs_of
from autoengagement.services.preview import config_preview
from tests.autoengagement.machine_zone import machine_zone
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
    assert held(1)[:4] == [16, 70, 94, 140]
    assert len(held(1)) == 96
    assert held(0) == []
    assert len(held(100)) == 10_000


def test_holdout_reads_the_spell_start_as_an_instant_whatever_its_zone():
    assert held(20, spell_start=SPELL_START.astimezone(ZoneInfo("Pacific/Kiritimati")), count=500) == held(
        20, count=500
    )
    assert held(20, spell_start=SPELL_START + dt.timedelta(seconds=1), count=500) != held(20, count=500)


def test_holdout_groups_do_not_depend_on_the_zone_of_the_machine_that_draws_them():
    """Workers on machines set to different zones put a customer in the same group."""
    with machine_zone("Asia/Kathmandu"):
        twenty = held(20, count=60)
    assert twenty == [5, 6, 8, 12, 15, 16, 22, 31, 46, 49, 51, 55]


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


def both_paths(config) -> tuple[set[int], set[int]]:
    """The audience as the run reads it (chunks, reminders filtered in Python) and as the preview counts it (one
    query)."""
    return run_audience(config), set(audience_queryset(config=config, now=NOW).values_list("pk", flat=True))


def log_at(config, member, at: dt.datetime, **fields) -> None:
    NotificationLogFactory(config=config, customer=member, created_at=at, run_date=at.date(), **fields)


@pytest.mark.django_db
@pytest.mark.parametrize("max_reminders", [1, 3])
def test_a_reminder_written_at_the_very_instant_the_spell_started_counts_in_it(max_reminders):
    config = AutoEngagementConfigFactory(inactivity_days=7, max_reminders=max_reminders, channels=["wallet"])
    at_start, just_before = quiet_customer(config), quiet_customer(config)
    log_at(config, at_start, at_start.last_activity_at)
    log_at(config, just_before, just_before.last_activity_at - dt.timedelta(microseconds=1))
    # Any further reminders the rule allows, spaced apart: the one at the start is the one too many.
    for member in (at_start, just_before):
        for days_ago in (30, 20)[: max_reminders - 1]:
            reminded(config, member, days_ago)
    assert both_paths(config) == ({just_before.pk}, {just_before.pk})


@pytest.mark.django_db
def test_a_reminder_exactly_inactivity_days_ago_is_far_enough_back_for_the_next():
    config = AutoEngagementConfigFactory(inactivity_days=7, max_reminders=2, channels=["wallet"])
    exactly, not_quite = quiet_customer(config), quiet_customer(config)
    log_at(config, exactly, NOW - 7 * DAY)
    log_at(config, not_quite, NOW - 7 * DAY + dt.timedelta(microseconds=1))
    assert both_paths(config) == ({exactly.pk}, {exactly.pk})


@pytest.mark.django_db
@pytest.mark.parametrize("order", ["created_at", "-created_at"])
def test_the_latest_reminder_spaces_the_next_whatever_order_the_log_rows_come_in(monkeypatch, order):
    """The log is read without an ORDER BY, so in whichever order the planner's index gives: here both orders."""
    config = AutoEngagementConfigFactory(inactivity_days=7, max_reminders=3, channels=["wallet", "email"])
    member = quiet_customer(config)
    reminded(config, member, 3, channels=("email",))
    reminded(config, member, 20, channels=("wallet",))
    monkeypatch.setattr(
        "autoengagement.services.audience.spell_logs_of", lambda config: spell_logs_of(config).order_by(order)
    )
    assert both_paths(config) == (set(), set())


@pytest.mark.django_db
@pytest.mark.parametrize("max_reminders", [1, 2])
def test_only_re_engagement_rows_count_against_the_spell(max_reminders):
    """The log is shared by notification types: a row of another type in the spell is no reminder."""
    config = AutoEngagementConfigFactory(inactivity_days=7, max_reminders=max_reminders, channels=["wallet"])
    member = quiet_customer(config)
    log_at(config, member, NOW - 3 * DAY, type="receipt")
    assert both_paths(config) == ({member.pk}, {member.pk})


@pytest.mark.django_db
def test_the_queryset_carries_each_members_reminders_so_far_and_the_latest():
    config = AutoEngagementConfigFactory(inactivity_days=7, max_reminders=3, channels=["wallet", "email"])
    never, twice = quiet_customer(config), quiet_customer(config)
    reminded(config, twice, 40)
    reminded(config, twice, 20, channels=("wallet", "email"))
    rows = audience_queryset(config=config, now=NOW).values_list("pk", "reminders", "latest_reminder_at")
    assert {pk: (reminders, latest) for pk, reminders, latest in rows} == {
        never.pk: (0, None),
        twice.pk: (2, NOW - 20 * DAY),
    }


@pytest.mark.django_db
def test_a_part_reads_exactly_its_inclusive_key_range():
    """A worker's part (services.parts) is a first and a last key, both in it, in chunks of any size."""
    config = AutoEngagementConfigFactory(inactivity_days=7, channels=["wallet"])
    keys = [quiet_customer(config).pk for _ in range(6)]
    # Consecutive keys, so a range one key too wide or too narrow at either end shows.
    assert keys == list(range(keys[0], keys[0] + 6))
    for chunk_size in (1, 2, 10):
        chunks = iter_audience_chunks(config=config, now=NOW, chunk_size=chunk_size, customers=(keys[1], keys[4]))
        assert [row["pk"] for chunk in chunks for row in chunk] == keys[1:5]
