"""What each chunk of the run's audience reads (iter_audience_chunks): the log rows and the wallet passes of its own
customers and no others (lookups by key range, so a chunk costs the same in a business of any size and a log of any
length), and on PostgreSQL no timestamp for Python to parse. What a read returns is seen by running its statement
again."""

import contextlib
import datetime as dt
from collections.abc import Iterator

import pytest
from django.db import connection

from autoengagement.services.audience import CANDIDATE_FIELDS, iter_audience_chunks
from tests.factories import AutoEngagementConfigFactory, CustomerFactory, NotificationLogFactory, WalletPassFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@contextlib.contextmanager
def statements() -> Iterator[list[tuple[str, object]]]:
    executed: list[tuple[str, object]] = []

    def record(execute, sql, params, many, context):
        executed.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        yield executed


def rows_read(sql: str, params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def quiet(config):
    return CustomerFactory(business=config.business, created_at=NOW - 400 * DAY, last_activity_at=NOW - 60 * DAY)


def log_at(config, member, at: dt.datetime, **fields) -> None:
    NotificationLogFactory(config=config, customer=member, created_at=at, run_date=at.date(), **fields)


def test_each_chunk_reads_only_its_own_customers_logs_in_their_spell_and_their_passes():
    config = AutoEngagementConfigFactory(inactivity_days=7, max_reminders=3, channels=["wallet", "email"])
    other = AutoEngagementConfigFactory(inactivity_days=7)
    mine, theirs = [], []
    for _ in range(4):
        # Keys interleaved with another business's: every chunk's key range holds some of its customers too.
        mine.append(quiet(config))
        theirs.append(quiet(other))
    for business_config, members in ((config, mine), (other, theirs)):
        for member in members:
            log_at(business_config, member, NOW - 20 * DAY)
            WalletPassFactory(customer=member)
    for member in mine:
        log_at(config, member, NOW - 90 * DAY)  # before the last visit, 60 days ago: another spell
    log_at(config, mine[0], NOW - 10 * DAY, type="receipt")  # not a re-engagement row

    with statements() as executed:
        chunks = [[row["pk"] for row in chunk] for chunk in iter_audience_chunks(config=config, now=NOW, chunk_size=2)]

    assert chunks == [[mine[0].pk, mine[1].pk], [mine[2].pk, mine[3].pk]]
    log_reads = [rows_read(sql, params) for sql, params in executed if "notifications_notificationlog" in sql]
    pass_reads = [rows_read(sql, params) for sql, params in executed if "wallet_walletpass" in sql]
    # One log row per customer (the one in this spell), one pass per customer: the chunk's own, nothing else.
    assert [sorted(row[0] for row in rows) for rows in log_reads] == chunks
    assert [sorted(row[0] for row in rows) for rows in pass_reads] == chunks


def test_on_postgresql_the_candidates_spell_starts_come_as_integer_microseconds_exact(on_postgres):
    """Django parses each timestamptz in Python (about a fifth of the run's Python time once): PostgreSQL hands the
    spell's start over as integer microseconds since the epoch instead, the same instant to the microsecond, before
    the epoch too. SQLite reads the timestamp itself."""
    config = AutoEngagementConfigFactory(inactivity_days=7, channels=["wallet"])
    seen, never = quiet(config), quiet(config)
    seen.last_activity_at = dt.datetime(2026, 5, 1, 7, 8, 9, 123457, tzinfo=dt.UTC)
    never.last_activity_at, never.created_at = None, dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
    seen.save(), never.save()

    with statements() as executed:
        members = [row for chunk in iter_audience_chunks(config=config, now=NOW, chunk_size=10) for row in chunk]

    assert {row["pk"]: row["quiet_since"] for row in members} == {
        seen.pk: seen.last_activity_at,
        never.pk: never.created_at,
    }
    # The same fields on either database: the microseconds are turned back into the instant, under its name.
    assert all(set(row) == {*CANDIDATE_FIELDS, "has_wallet_pass", "step"} for row in members)
    candidate_reads = [rows_read(sql, params) for sql, params in executed if 'FROM "wallet_customer"' in sql]
    assert candidate_reads
    if on_postgres:
        values = [value for rows in candidate_reads for row in rows for value in row]
        assert not [value for value in values if isinstance(value, dt.datetime)]
