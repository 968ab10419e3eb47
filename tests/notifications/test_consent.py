import itertools

import pytest

from notifications.consent import (
    NO_ADDRESS,
    OPTED_OUT,
    UNDELIVERABLE,
    annotate_skip_reasons,
    consent_fields,
    sendable_q,
    skip_reason,
)
from tests.factories import BusinessFactory, CustomerFactory
from wallet.models import Customer

CHANNELS = ["email", "sms", "push"]


def customer_fields(**overrides) -> dict:
    fields = {
        "email": "a@example.com",
        "phone": "+14155550100",
        "push_token": "token",
        "email_opt_out": False,
        "sms_opt_out": False,
        "push_opt_out": False,
        "sms_undeliverable_phone": "",
        "sms_undeliverable_reason": "",
    }
    return {**fields, **overrides}


@pytest.mark.parametrize(
    ("channel", "overrides", "expected"),
    [
        ("email", {}, None),
        ("email", {"email": ""}, NO_ADDRESS),
        ("email", {"email_opt_out": True}, OPTED_OUT),
        ("email", {"email": "", "email_opt_out": True}, OPTED_OUT),
        ("email", {"sms_opt_out": True, "push_token": ""}, None),
        ("sms", {"phone": ""}, NO_ADDRESS),
        ("sms", {"sms_opt_out": True}, OPTED_OUT),
        ("sms", {"email_opt_out": True}, None),
        # A receipt marked the number undeliverable: skipped with the receipt's reason while the phone is that number.
        (
            "sms",
            {"sms_undeliverable_phone": "+14155550100", "sms_undeliverable_reason": "Twilio 30003: Unreachable"},
            f"{UNDELIVERABLE}: Twilio 30003: Unreachable",
        ),
        ("sms", {"sms_undeliverable_phone": "+14155550100"}, UNDELIVERABLE),
        ("sms", {"sms_undeliverable_phone": "+14155550199", "sms_undeliverable_reason": "Twilio 30003"}, None),
        ("sms", {"sms_undeliverable_phone": "+14155550100", "sms_opt_out": True}, OPTED_OUT),
        ("email", {"sms_undeliverable_phone": "+14155550100"}, None),
        ("push", {"push_token": ""}, NO_ADDRESS),
        ("push", {"push_opt_out": True}, OPTED_OUT),
        ("wallet", {"email": "", "phone": "", "push_token": "", "email_opt_out": True}, None),
    ],
)
def test_skip_reason(channel, overrides, expected):
    assert skip_reason(channel=channel, customer=customer_fields(**overrides)) == expected


def test_skip_reason_reads_model_instances_too():
    customer = Customer(email="", phone="+14155550100", sms_opt_out=True)
    assert skip_reason(channel="email", customer=customer) == NO_ADDRESS
    assert skip_reason(channel="sms", customer=customer) == OPTED_OUT


def test_unknown_channel_is_an_error():
    with pytest.raises(ValueError):
        skip_reason(channel="fax", customer=customer_fields())


def test_consent_fields():
    assert consent_fields(channel="sms") == (
        "phone",
        "sms_opt_out",
        "sms_undeliverable_phone",
        "sms_undeliverable_reason",
    )
    assert consent_fields(channel="email") == ("email", "email_opt_out")
    assert consent_fields(channel="wallet") == ()


@pytest.fixture
def every_combination(db):
    """One customer per combination of (address present, opted out) on every channel, and of the SMS number's mark
    (none, this number with and without a reason, another number)."""
    business = BusinessFactory()
    customers = []
    marks = [("", ""), ("+14155550100", "Twilio 30005"), ("+14155550100", ""), ("+14155550199", "Twilio 30006")]
    for (email, phone, token, *opt_outs), mark in itertools.product(itertools.product([True, False], repeat=6), marks):
        customers.append(
            CustomerFactory(
                business=business,
                email="c@example.com" if email else "",
                phone="+14155550100" if phone else "",
                push_token="token" if token else "",
                email_opt_out=opt_outs[0],
                sms_opt_out=opt_outs[1],
                push_opt_out=opt_outs[2],
                sms_undeliverable_phone=mark[0],
                sms_undeliverable_reason=mark[1],
            )
        )
    return business, customers


@pytest.mark.parametrize("channel", [*CHANNELS, "wallet"])
def test_the_database_filter_agrees_with_the_python_rule(every_combination, channel):
    business, customers = every_combination
    expected = {c.pk for c in customers if skip_reason(channel=channel, customer=c) is None}
    assert (
        set(Customer.objects.filter(business=business).filter(sendable_q(channel=channel)).values_list("pk", flat=True))
        == expected
    )


def test_annotations_label_a_whole_chunk_in_one_query(every_combination, django_assert_num_queries):
    business, customers = every_combination
    with django_assert_num_queries(1):
        rows = list(
            annotate_skip_reasons(Customer.objects.filter(business=business), channels=[*CHANNELS, "wallet"]).values(
                "pk", "skip_email", "skip_sms", "skip_push", "skip_wallet"
            )
        )
    by_pk = {customer.pk: customer for customer in customers}
    assert len(rows) == 64 * 4
    for row in rows:
        for channel in [*CHANNELS, "wallet"]:
            assert row[f"skip_{channel}"] == skip_reason(channel=channel, customer=by_pk[row["pk"]])
