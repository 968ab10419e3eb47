import datetime as dt
import uuid

import pytest

from autoengagement.services.audience import audience_queryset, in_holdout, iter_audience_chunks
from notifications.models import NotificationLog
from tests.factories import AutoEngagementConfigFactory, CustomerFactory, NotificationLogFactory, WalletPassFactory

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def customer(config, *, quiet_for=None, created_ago=400 * DAY, **fields):
    return CustomerFactory(
        business=config.business,
        created_at=NOW - created_ago,
        last_activity_at=None if quiet_for is None else NOW - quiet_for,
        **fields,
    )


def audience(config, now=NOW):
    return set(audience_queryset(config=config, now=now).values_list("pk", flat=True))


def remind(config, member, at):
    NotificationLogFactory(config=config, customer=member, created_at=at, run_date=at.date())


def test_inactivity_threshold_edges():
    config = AutoEngagementConfigFactory(inactivity_days=7)
    exactly = customer(config, quiet_for=7 * DAY)
    just_short = customer(config, quiet_for=7 * DAY - dt.timedelta(seconds=1))
    long_ago = customer(config, quiet_for=300 * DAY)
    assert audience(config) == {exactly.pk, long_ago.pk}
    assert just_short.pk not in audience(config)


def test_never_active_customers_count_from_their_creation():
    config = AutoEngagementConfigFactory(inactivity_days=7)
    old = customer(config, created_ago=8 * DAY)
    new = customer(config, created_ago=6 * DAY)
    assert audience(config) == {old.pk}
    assert new.pk not in audience(config)


def test_max_inactivity_days_edges():
    config = AutoEngagementConfigFactory(inactivity_days=7, max_inactivity_days=90)
    at_bound = customer(config, quiet_for=90 * DAY)
    one_day_more = customer(config, quiet_for=91 * DAY)
    assert audience(config) == {at_bound.pk}
    assert one_day_more.pk not in audience(config)


def test_other_businesses_customers_are_never_in_the_audience():
    config = AutoEngagementConfigFactory(inactivity_days=7)
    other = AutoEngagementConfigFactory(inactivity_days=7)
    mine = customer(config, quiet_for=30 * DAY)
    customer(other, quiet_for=30 * DAY)
    assert audience(config) == {mine.pk}


def test_one_reminder_per_spell_by_default_and_a_visit_starts_a_new_spell():
    config = AutoEngagementConfigFactory(inactivity_days=7)
    member = customer(config, quiet_for=10 * DAY)
    remind(config, member, NOW - 2 * DAY)
    assert member.pk not in audience(config)
    assert member.pk not in audience(config, NOW + 30 * DAY)
    # A visit after the reminder opens a new spell: reached again once it has lasted inactivity_days.
    member.last_activity_at = NOW - DAY
    member.save()
    assert member.pk not in audience(config, NOW + 5 * DAY)
    assert member.pk in audience(config, NOW + 6 * DAY)


def test_max_reminders_spaced_inactivity_days_apart():
    config = AutoEngagementConfigFactory(inactivity_days=7, max_reminders=2)
    member = customer(config, quiet_for=7 * DAY)
    assert member.pk in audience(config)
    remind(config, member, NOW)
    assert member.pk not in audience(config, NOW + 6 * DAY)
    assert member.pk in audience(config, NOW + 7 * DAY)
    remind(config, member, NOW + 7 * DAY)
    assert member.pk not in audience(config, NOW + 30 * DAY)


def test_every_logged_attempt_counts_as_a_reminder():
    config = AutoEngagementConfigFactory(inactivity_days=7)
    member = customer(config, quiet_for=10 * DAY)
    NotificationLogFactory(config=config, customer=member, created_at=NOW - DAY, status=NotificationLog.Status.SKIPPED)
    assert member.pk not in audience(config)


def test_chunks_cover_everyone_once_in_key_order():
    config = AutoEngagementConfigFactory(inactivity_days=7)
    members = [customer(config, quiet_for=(10 + i) * DAY) for i in range(7)]
    WalletPassFactory(customer=members[0])
    chunks = list(iter_audience_chunks(config=config, now=NOW, chunk_size=3))
    assert [len(chunk) for chunk in chunks] == [3, 3, 1]
    assert [row["pk"] for chunk in chunks for row in chunk] == sorted(m.pk for m in members)
    by_pk = {row["pk"]: row for chunk in chunks for row in chunk}
    assert by_pk[members[0].pk]["has_wallet_pass"] is True
    assert by_pk[members[1].pk]["has_wallet_pass"] is False
    assert by_pk[members[2].pk]["quiet_since"] == NOW - 12 * DAY


def test_holdout_is_deterministic_and_near_its_share():
    spell = NOW - 30 * DAY
    ids = [f"cust_{uuid.uuid4().hex[:20]}" for _ in range(10_000)]
    first = [in_holdout(config_id="aec_x", customer_id=i, spell_start=spell, holdout_percent=20) for i in ids]
    again = [in_holdout(config_id="aec_x", customer_id=i, spell_start=spell, holdout_percent=20) for i in ids]
    assert first == again
    assert 0.17 <= sum(first) / len(ids) <= 0.23
    assert not any(in_holdout(config_id="aec_x", customer_id=i, spell_start=spell, holdout_percent=0) for i in ids)


@pytest.mark.parametrize("max_reminders", [1, 3])
def test_chunked_audience_agrees_with_the_queryset_rule(max_reminders):
    """The run filters reminders in Python per chunk; the preview counts with one query: they must agree."""
    config = AutoEngagementConfigFactory(inactivity_days=7, max_reminders=max_reminders, max_inactivity_days=200)
    members = [customer(config, quiet_for=days * DAY) for days in (3, 7, 8, 15, 22, 30, 60, 199, 201)]
    members.append(customer(config, created_ago=40 * DAY))  # never active
    for index, member in enumerate(members):
        for reminder in range(index % 4):  # 0..3 earlier reminders, some in an older spell
            at = NOW - (reminder * 8 + index % 3) * DAY
            NotificationLogFactory(
                config=config,
                customer=member,
                created_at=at,
                run_date=at.date(),
                channel="email" if reminder % 2 else "wallet",
            )
    for now in (NOW, NOW + 3 * DAY, NOW + 9 * DAY):
        chunked = {row["pk"] for chunk in iter_audience_chunks(config=config, now=now, chunk_size=3) for row in chunk}
        assert chunked == audience(config, now)
    assert audience(config)  # the dataset is not trivially empty
