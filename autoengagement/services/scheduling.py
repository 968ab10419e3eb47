"""When is a config due? Local send times in any IANA zone, DST gaps and repeats included."""

import datetime as dt
import enum
from dataclasses import dataclass
from zoneinfo import ZoneInfo


class Due(enum.Enum):
    NOT_YET = "not_yet"
    DUE = "due"
    ALREADY_RAN = "already_ran"
    MISSED = "missed"


@dataclass(frozen=True)
class Schedule:
    local_date: dt.date
    send_at: dt.datetime
    state: Due
    # The last local run date lies after local today (a mistyped --now, a clock step): ignored, and reported.
    clock_skew: bool = False


def _wall_clock(instant: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def local_send_instant(*, run_time: str, zone: ZoneInfo, local_date: dt.date) -> dt.datetime:
    """The UTC instant of `run_time` on `local_date`.

    A wall-clock time repeated by a fall-back transition means its first occurrence (fold=0); one skipped by
    a spring-forward gap means the first valid instant after it, which is the transition itself.
    """
    hours, minutes = (int(part) for part in run_time.split(":"))
    wall = dt.datetime.combine(local_date, dt.time(hours, minutes))
    # Equivalent mutants, not tested (pragma): combine() already gives fold=0, so leaving it out changes nothing; and
    # the check below is a shortcut, since outside a gap the search returns `first` too (fold=1 reads the same
    # instant, or a later one in a repeated hour), so reading the wall clock in another zone there changes nothing.
    first = wall.replace(tzinfo=zone, fold=0).astimezone(dt.UTC)  # pragma: no mutate
    if _wall_clock(first, zone) == wall:  # pragma: no mutate
        return first
    # In a gap, fold=1 reads the time with the offset after the jump (an instant before the transition) and fold=0
    # with the offset before it (an instant after). The transition lies between: find it to the second.
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = int(first.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        # Equivalent mutants, not tested (pragma): an instant read without a zone is the machine's local time, which
        # _wall_clock converts back to the same instant; and the wall clock at the transition is the gap's end, never
        # a time in the gap, so > finds the same second as >=.
        if _wall_clock(dt.datetime.fromtimestamp(middle, dt.UTC), zone) >= wall:  # pragma: no mutate
            high = middle
        else:
            low = middle
    return dt.datetime.fromtimestamp(high, dt.UTC)


def schedule_for(
    *,
    run_time: str,
    timezone_name: str,
    last_run_local_date: dt.date | None,
    now: dt.datetime,
    max_lateness: dt.timedelta,
) -> Schedule:
    """Where `now` stands against today's (local) send time.

    Whole days missed are not made up; a send time more than `max_lateness` ago is MISSED so that an outage
    never ends in a message at 3 a.m. A last run date after local today cannot be true: it never silences a
    business, the day is scheduled as if it had not run and the skew is flagged for the caller to report.
    """
    zone = ZoneInfo(timezone_name)
    local_date = now.astimezone(zone).date()
    send_at = local_send_instant(run_time=run_time, zone=zone, local_date=local_date)
    clock_skew = last_run_local_date is not None and last_run_local_date > local_date
    if last_run_local_date is not None and last_run_local_date == local_date:
        state = Due.ALREADY_RAN
    elif now < send_at:
        state = Due.NOT_YET
    elif now - send_at > max_lateness:
        state = Due.MISSED
    else:
        state = Due.DUE
    return Schedule(local_date=local_date, send_at=send_at, state=state, clock_skew=clock_skew)


def local_today(*, timezone_name: str, now: dt.datetime) -> dt.date:
    return now.astimezone(ZoneInfo(timezone_name)).date()
