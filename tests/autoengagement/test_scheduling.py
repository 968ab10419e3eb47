import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from autoengagement.services.scheduling import Due, local_send_instant, local_today, schedule_for
from tests.autoengagement.machine_zone import machine_zone

UTC = dt.UTC
LATENESS = dt.timedelta(minutes=180)


def state(run_time, zone, now, last=None, lateness=LATENESS):
    return schedule_for(run_time=run_time, timezone_name=zone, last_run_local_date=last, now=now, max_lateness=lateness)


@pytest.mark.parametrize(
    ("zone", "local_date", "expected_utc"),
    [
        ("UTC", dt.date(2026, 6, 1), dt.datetime(2026, 6, 1, 9, 0, tzinfo=UTC)),
        ("Asia/Tokyo", dt.date(2026, 6, 1), dt.datetime(2026, 6, 1, 0, 0, tzinfo=UTC)),
        ("Asia/Kathmandu", dt.date(2026, 6, 1), dt.datetime(2026, 6, 1, 3, 15, tzinfo=UTC)),
        ("Pacific/Kiritimati", dt.date(2026, 6, 1), dt.datetime(2026, 5, 31, 19, 0, tzinfo=UTC)),
        ("Etc/GMT+12", dt.date(2026, 6, 1), dt.datetime(2026, 6, 1, 21, 0, tzinfo=UTC)),
        ("America/New_York", dt.date(2026, 6, 1), dt.datetime(2026, 6, 1, 13, 0, tzinfo=UTC)),
    ],
)
def test_send_instant_in_odd_zones(zone, local_date, expected_utc):
    assert local_send_instant(run_time="09:00", zone=ZoneInfo(zone), local_date=local_date) == expected_utc


@pytest.mark.parametrize(
    ("zone", "before", "at"),
    [
        ("UTC", dt.datetime(2026, 6, 1, 8, 59, 59, tzinfo=UTC), dt.datetime(2026, 6, 1, 9, 0, tzinfo=UTC)),
        ("Asia/Tokyo", dt.datetime(2026, 5, 31, 23, 59, tzinfo=UTC), dt.datetime(2026, 6, 1, 0, 0, tzinfo=UTC)),
        ("Asia/Kathmandu", dt.datetime(2026, 6, 1, 3, 14, tzinfo=UTC), dt.datetime(2026, 6, 1, 3, 15, tzinfo=UTC)),
        ("Pacific/Kiritimati", dt.datetime(2026, 5, 31, 18, 59, tzinfo=UTC), dt.datetime(2026, 5, 31, 19, tzinfo=UTC)),
        ("Etc/GMT+12", dt.datetime(2026, 6, 1, 20, 59, tzinfo=UTC), dt.datetime(2026, 6, 1, 21, 0, tzinfo=UTC)),
    ],
)
def test_due_exactly_from_the_local_send_time(zone, before, at):
    assert state("09:00", zone, before).state == Due.NOT_YET
    due = state("09:00", zone, at)
    assert due.state == Due.DUE
    assert due.local_date == dt.date(2026, 6, 1)


def test_kiritimati_runs_on_its_own_local_date_a_day_ahead_of_utc():
    due = state("09:00", "Pacific/Kiritimati", dt.datetime(2026, 5, 31, 20, 0, tzinfo=UTC))
    assert (due.state, due.local_date) == (Due.DUE, dt.date(2026, 6, 1))


def test_spring_forward_gap_runs_at_the_first_valid_instant_after_it():
    zone = ZoneInfo("America/New_York")
    # 2026-03-08: clocks jump from 02:00 EST to 03:00 EDT (07:00 UTC); 02:30 never happens.
    send_at = local_send_instant(run_time="02:30", zone=zone, local_date=dt.date(2026, 3, 8))
    assert send_at == dt.datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert send_at.astimezone(zone).strftime("%H:%M %Z") == "03:00 EDT"
    assert state("02:30", "America/New_York", dt.datetime(2026, 3, 8, 6, 59, 59, tzinfo=UTC)).state == Due.NOT_YET
    assert state("02:30", "America/New_York", dt.datetime(2026, 3, 8, 7, 0, tzinfo=UTC)).state == Due.DUE


def test_fall_back_repeated_hour_means_its_first_occurrence_and_runs_once():
    # 2026-11-01: 01:30 EDT (05:30 UTC) and again 01:30 EST (06:30 UTC).
    first = dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert local_send_instant(run_time="01:30", zone=ZoneInfo("America/New_York"), local_date=first.date()) == first
    assert state("01:30", "America/New_York", first).state == Due.DUE
    again = state("01:30", "America/New_York", dt.datetime(2026, 11, 1, 6, 30, tzinfo=UTC), last=first.date())
    assert again.state == Due.ALREADY_RAN


def test_once_per_local_date():
    now = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert state("09:00", "UTC", now, last=dt.date(2026, 6, 1)).state == Due.ALREADY_RAN
    assert state("09:00", "UTC", now, last=dt.date(2026, 5, 31)).state == Due.DUE


def test_lateness_bound():
    assert state("09:00", "UTC", dt.datetime(2026, 6, 1, 11, 59, tzinfo=UTC)).state == Due.DUE
    assert state("09:00", "UTC", dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)).state == Due.DUE
    assert state("09:00", "UTC", dt.datetime(2026, 6, 1, 12, 1, tzinfo=UTC)).state == Due.MISSED
    assert state("09:00", "UTC", dt.datetime(2026, 6, 2, 9, 0, tzinfo=UTC), last=dt.date(2026, 6, 1)).state == Due.DUE


def test_whole_days_missed_are_not_made_up():
    # Last ran three days ago; today's send time has not come: nothing to catch up now.
    now = dt.datetime(2026, 6, 4, 8, 0, tzinfo=UTC)
    assert state("09:00", "UTC", now, last=dt.date(2026, 6, 1)).state == Due.NOT_YET


@pytest.mark.parametrize(
    ("zone", "local_date", "run_time", "expected_utc", "shown"),
    [
        # 2026-03-29: Paris jumps from 02:00 CET to 03:00 CEST (01:00 UTC); 02:30 never happens.
        ("Europe/Paris", dt.date(2026, 3, 29), "02:30", dt.datetime(2026, 3, 29, 1, 0, tzinfo=UTC), "03:00"),
        # 2026-10-04: Lord Howe moves half an hour, 02:00 (+10:30) to 02:30 (+11:00), at 15:30 UTC the day before.
        ("Australia/Lord_Howe", dt.date(2026, 10, 4), "02:15", dt.datetime(2026, 10, 3, 15, 30, tzinfo=UTC), "02:30"),
    ],
)
def test_a_gap_east_of_utc_runs_at_the_transition(zone, local_date, run_time, expected_utc, shown):
    send_at = local_send_instant(run_time=run_time, zone=ZoneInfo(zone), local_date=local_date)
    assert send_at == expected_utc
    assert send_at.astimezone(ZoneInfo(zone)).strftime("%H:%M") == shown


def test_lord_howes_repeated_half_hour_means_its_first_occurrence():
    # 2026-04-05: 02:00 (+11:00) goes back to 01:30 (+10:30); 01:45 happens at 14:45 and again at 15:15 UTC.
    zone = ZoneInfo("Australia/Lord_Howe")
    first = dt.datetime(2026, 4, 4, 14, 45, tzinfo=UTC)
    assert local_send_instant(run_time="01:45", zone=zone, local_date=dt.date(2026, 4, 5)) == first


@pytest.mark.parametrize(
    ("zone", "local_date", "gap_minutes", "transition"),
    [
        ("America/New_York", dt.date(2026, 3, 8), 60, dt.datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),
        ("Europe/Paris", dt.date(2026, 3, 29), 60, dt.datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        ("Australia/Lord_Howe", dt.date(2026, 10, 4), 30, dt.datetime(2026, 10, 3, 15, 30, tzinfo=UTC)),
    ],
)
def test_every_minute_of_a_gap_runs_at_the_transition_to_the_microsecond(zone, local_date, gap_minutes, transition):
    """Each of these gaps starts at 02:00; the search for the transition ends on it exactly from any minute in it."""
    for minute in range(gap_minutes):
        send_at = local_send_instant(run_time=f"02:{minute:02d}", zone=ZoneInfo(zone), local_date=local_date)
        assert send_at == transition, f"02:{minute:02d}"
        assert send_at.microsecond == 0


def test_send_instants_are_utc_whatever_the_zone_of_the_machine():
    with machine_zone("Asia/Kathmandu"):
        plain = local_send_instant(run_time="09:00", zone=ZoneInfo("America/New_York"), local_date=dt.date(2026, 6, 1))
        in_gap = local_send_instant(run_time="02:30", zone=ZoneInfo("America/New_York"), local_date=dt.date(2026, 3, 8))
        due = state("09:00", "Asia/Tokyo", dt.datetime(2026, 6, 1, 0, 0, tzinfo=UTC))
    assert plain.isoformat() == "2026-06-01T13:00:00+00:00"
    assert in_gap.isoformat() == "2026-03-08T07:00:00+00:00"
    assert (due.state, due.local_date, due.send_at.isoformat()) == (
        Due.DUE,
        dt.date(2026, 6, 1),
        "2026-06-01T00:00:00+00:00",
    )


def test_a_last_run_date_after_local_today_is_flagged_and_never_silences_the_day():
    now = dt.datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    skewed = state("09:00", "UTC", now, last=dt.date(2026, 6, 2))
    assert (skewed.state, skewed.clock_skew) == (Due.DUE, True)
    ran_today = state("09:00", "UTC", now, last=dt.date(2026, 6, 1))
    assert (ran_today.state, ran_today.clock_skew) == (Due.ALREADY_RAN, False)
    assert state("09:00", "UTC", now, last=dt.date(2026, 5, 31)).clock_skew is False
    assert state("09:00", "UTC", now).clock_skew is False
    # Local today, not UTC's: in Kiritimati it is already 2 June, so a last run on 2 June is no skew there.
    kiritimati = state(
        "09:00", "Pacific/Kiritimati", dt.datetime(2026, 6, 1, 20, 0, tzinfo=UTC), last=dt.date(2026, 6, 2)
    )
    assert (kiritimati.state, kiritimati.clock_skew) == (Due.ALREADY_RAN, False)


def test_local_today_is_the_date_in_the_businesss_zone():
    """Zones either side of UTC: whatever the machine's zone, it cannot agree with both."""
    now = dt.datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    assert local_today(timezone_name="Pacific/Kiritimati", now=now - dt.timedelta(hours=12)) == dt.date(2026, 6, 1)
    assert local_today(timezone_name="Etc/GMT+12", now=now) == dt.date(2026, 5, 31)
