"""Delivery receipts and the results (docs/results.md, "Reached"): a customer counts as reached only when at least one
of their sent messages was not reported undelivered. A receipt that arrives after the day was summarised changes
the numbers exactly: every step below checks each number of a hand-built dataset, the same numbers counted from the
log, the same after the stale days are refreshed, and the reference computed from every row."""

import datetime as dt

import pytest

from autoengagement.models import ResultsDay
from autoengagement.services import results
from autoengagement.services.receipts import record_receipt
from autoengagement.stats import REACHED_DEFINITION, engagement_stats
from notifications.receipts import Receipt
from tests.api import client_for
from tests.autoengagement.reference import computed_stats, reference_stats
from tests.factories import AutoEngagementConfigFactory, BusinessFactory, CustomerFactory, log_row, save_logs
from wallet.models import Customer
from wallet.services import record_visits

pytestmark = pytest.mark.django_db

D1, D2 = dt.date(2026, 3, 2), dt.date(2026, 3, 3)
WINDOWS = [(D1, D2), (D1, D1), (D2, D2)]


def _at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)


@pytest.fixture
def dataset():
    """A: SMS and email sent on D1, came back. B: SMS sent on D1 (no email address), came back. C: SMS sent on D1,
    and again on D2, came back after D2. H: held out on D1, came back. F: both channels failed on D1."""
    business = BusinessFactory(timezone="UTC")
    config = AutoEngagementConfigFactory(business=business, channels=["sms", "email"], holdout_percent=20)
    people = {name: CustomerFactory(business=business, phone=f"+1415555010{n}") for n, name in enumerate("ABCHF")}
    a, b, c, h, f = people.values()
    back = {"reactivated_at": _at(D2, 18)}
    rows = [
        log_row(config, a, D1, channel="sms", provider_message_id="SMa", **back),
        log_row(config, a, D1, channel="email", provider_message_id="<a@mail>", **back),
        log_row(config, b, D1, channel="sms", provider_message_id="SMb", **back),
        log_row(config, b, D1, channel="email", status="skipped", error="no address", **back),
        log_row(config, c, D1, channel="sms", provider_message_id="SMc1"),
        log_row(config, c, D1, channel="email", status="skipped", error="no address"),
        log_row(config, c, D2, channel="sms", provider_message_id="SMc2", reactivated_at=_at(D2, 20)),
        log_row(config, c, D2, channel="email", status="skipped", error="no address", reactivated_at=_at(D2, 20)),
        log_row(config, h, D1, channel="sms", status="holdout", **back),
        log_row(config, h, D1, channel="email", status="holdout", **back),
        log_row(config, f, D1, channel="sms", status="failed", error="Twilio error 21211"),
        log_row(config, f, D1, channel="email", status="failed", error="SMTP 550"),
    ]
    save_logs(rows)
    results.refresh_stale_days()
    assert not ResultsDay.objects.filter(stale=True).exists()
    return business, people


def sms(sid: str, outcome: str, code: str = "") -> Receipt:
    error = {"30003": "Twilio 30003: Unreachable destination handset", "30008": "Twilio 30008: Unknown error"}
    return Receipt("sms", sid, outcome, error=error.get(code, ""))


def numbers(business, date_from, date_to) -> tuple:
    """reached, reached who came back, holdout, holdout who came back, delivered per channel."""
    result = engagement_stats(business=business, date_from=date_from, date_to=date_to)
    return (result.reached, result.reactivated["reached"], result.holdout, result.reactivated["holdout"]), (
        result.delivered
    )


def assert_exact(business, expected: dict) -> None:
    """Each window's numbers are `expected`, whether read from the summary as it stands, counted from the log, or
    read again after the stale days are refreshed; and they agree with the reference computed from every row."""
    stale = set(ResultsDay.objects.filter(stale=True).values_list("run_date", flat=True))
    for window, want in expected.items():
        assert numbers(business, *window) == want, window
        assert computed_stats(business, *window) == reference_stats(business, *window), window
    ResultsDay.objects.update(stale=True)  # every day counted from the log
    for window, want in expected.items():
        assert numbers(business, *window) == want, window
    ResultsDay.objects.exclude(run_date__in=stale).update(stale=False)
    results.refresh_stale_days()
    assert not ResultsDay.objects.filter(stale=True).exists()
    for window, want in expected.items():
        assert numbers(business, *window) == want, window


def stale_days(business) -> set[dt.date]:
    return set(ResultsDay.objects.filter(business=business, stale=True).values_list("run_date", flat=True))


def test_receipts_change_who_counts_as_reached_exactly(dataset):
    business, _ = dataset
    before = {(D1, D2): ((3, 3, 1, 1), {}), (D1, D1): ((3, 2, 1, 1), {}), (D2, D2): ((1, 1, 0, 0), {})}
    assert_exact(business, before)

    # A's SMS never arrived, but their email did: A is still reached; no cohort changes, the summary stays fresh.
    assert record_receipt(receipt=sms("SMa", "undelivered", "30003"))
    assert record_receipt(receipt=Receipt("email", "<a@mail>", "delivered"))
    assert stale_days(business) == set()
    delivered = {"email": 1}
    assert_exact(
        business,
        {(D1, D2): ((3, 3, 1, 1), delivered), (D1, D1): ((3, 2, 1, 1), delivered), (D2, D2): ((1, 1, 0, 0), {})},
    )

    # B's only message never arrived: B is no longer reached (nor counted as reached and back).
    assert record_receipt(receipt=sms("SMb", "undelivered", "30008"))
    assert stale_days(business) == {D1, D2}  # the day, and the later day whose cohorts point back at it
    assert_exact(
        business,
        {(D1, D2): ((2, 2, 1, 1), delivered), (D1, D1): ((2, 1, 1, 1), delivered), (D2, D2): ((1, 1, 0, 0), {})},
    )

    # C's first SMS never arrived either: C's first reached day is now D2 (still reached once over both days).
    assert record_receipt(receipt=sms("SMc1", "undelivered", "30003"))
    assert_exact(
        business,
        {(D1, D2): ((2, 2, 1, 1), delivered), (D1, D1): ((1, 1, 1, 1), delivered), (D2, D2): ((1, 1, 0, 0), {})},
    )

    # B's SMS arrived after all (a late delivered report wins over the failure): B is reached again.
    assert record_receipt(receipt=sms("SMb", "delivered"))
    delivered = {"email": 1, "sms": 1}
    assert_exact(
        business,
        {(D1, D2): ((3, 3, 1, 1), delivered), (D1, D1): ((2, 2, 1, 1), delivered), (D2, D2): ((1, 1, 0, 0), {})},
    )

    # Receipts repeated, or arriving out of order, change nothing more.
    for receipt in (sms("SMb", "undelivered", "30008"), sms("SMb", "delivered"), sms("SMa", "undelivered", "30003")):
        assert record_receipt(receipt=receipt)
    assert stale_days(business) == set()
    assert_exact(
        business,
        {(D1, D2): ((3, 3, 1, 1), delivered), (D1, D1): ((2, 2, 1, 1), delivered), (D2, D2): ((1, 1, 0, 0), {})},
    )


def test_a_delivered_receipt_is_counted_into_a_fresh_summary(dataset):
    business, _ = dataset
    assert record_receipt(receipt=sms("SMc2", "delivered"))
    assert stale_days(business) == set()
    assert numbers(business, D2, D2) == ((1, 1, 0, 0), {"sms": 1})


def test_an_unknown_message_changes_nothing(dataset):
    business, _ = dataset
    assert not record_receipt(receipt=sms("SMzz", "undelivered", "30003"))
    assert stale_days(business) == set()
    assert numbers(business, D1, D2) == ((3, 3, 1, 1), {})


def test_a_visit_credited_after_an_undelivered_receipt_keeps_the_summary_exact():
    business = BusinessFactory(timezone="UTC")
    config = AutoEngagementConfigFactory(business=business, channels=["sms", "email"])
    both, sms_only = CustomerFactory(business=business), CustomerFactory(business=business)
    save_logs(
        [
            log_row(config, both, D1, channel="sms", provider_message_id="SM1"),
            log_row(config, both, D1, channel="email", provider_message_id="<1@mail>"),
            log_row(config, sms_only, D1, channel="sms", provider_message_id="SM2"),
            log_row(config, sms_only, D1, channel="email", status="skipped", error="no address"),
        ]
    )
    results.refresh_stale_days()
    record_receipt(receipt=sms("SM1", "undelivered", "30003"))
    record_receipt(receipt=sms("SM2", "undelivered", "30003"))
    results.refresh_stale_days()
    assert numbers(business, D1, D1) == ((1, 0, 0, 0), {})
    # Both come back: the visits are credited to the rows (as to every row of the re-engagement), and counted into
    # the fresh summary, which must leave out the customer no message reached.
    record_visits(business=business, visits=[(both, _at(D2, 12)), (sms_only, _at(D2, 13))], now=_at(D2, 14))
    assert stale_days(business) == set()
    assert numbers(business, D1, D1) == ((1, 1, 0, 0), {})
    assert computed_stats(business, D1, D1) == reference_stats(business, D1, D1)
    ResultsDay.objects.update(stale=True)
    assert numbers(business, D1, D1) == ((1, 1, 0, 0), {})


def test_the_stats_json_says_what_reached_means(dataset):
    business, _ = dataset
    body = client_for(business).get("/api/auto-engagement/stats", {"date_from": D1, "date_to": D2}).json()
    assert body["reached_definition"] == REACHED_DEFINITION
    assert "not reported undelivered" in body["reached_definition"]


def test_a_receipt_marks_the_number_it_was_about(dataset):
    _, people = dataset
    record_receipt(receipt=Receipt("sms", "SMa", "undelivered", consent="undeliverable", reason="Twilio 30003"))
    a = Customer.objects.get(pk=people["A"].pk)
    assert (a.sms_undeliverable_phone, a.sms_undeliverable_reason) == (people["A"].phone, "Twilio 30003")


@pytest.mark.parametrize("later_days", [2, 30])
def test_a_receipt_takes_a_fixed_number_of_queries(later_days, django_assert_num_queries):
    """Whatever the business's history: the row, its day's lock, the reach check and marking the later days stale
    are each one statement (or a fixed few)."""
    business = BusinessFactory(timezone="UTC")
    config = AutoEngagementConfigFactory(business=business, channels=["sms"])
    customer = CustomerFactory(business=business)
    rows = [log_row(config, customer, D1, channel="sms", provider_message_id="SM1")]
    rows += [
        log_row(config, CustomerFactory(business=business), D1 + dt.timedelta(days=n), channel="sms")
        for n in range(1, later_days + 1)
    ]
    save_logs(rows)
    results.refresh_stale_days()
    with django_assert_num_queries(16):
        assert record_receipt(receipt=sms("SM1", "undelivered", "30003"))
    assert len(stale_days(business)) == later_days + 1
