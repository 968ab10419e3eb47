"""The daily run against fault-injecting stand-ins of every provider: what it records, what it retries, what reaches
the customer, over the invocation that meets the fault and the later ones that find the provider healthy again.

For each provider (Twilio, FCM, Google Wallet, APNs, SMTP) and fault, a handful of inactive customers go through
`run_auto_engagement --now NOW --format json`; the fault is then removed and the next invocation runs at the config's
`retry_at` (or 15 minutes later when nothing was left to retry), then a forced one (--business) an hour after that.
Checked each time: the stand-in's own count of deliveries per customer, every log row's status and attempts, the JSON
summary, the command's exit status and the config's run status. The counts go to the table printed at the end of the
session (tests/faults/conftest.py).

APNs pass-update pushes are idempotent (empty payload; the device refetches the pass, whose message shows once), so
its client retries every transient fault within the invocation: its faults are scripted once per device token and the
messages end `sent` in the same invocation; a fault after which Apple acted (timeout, reset, 500) is then pushed twice,
which the table shows; what the customer sees, the pass's message, is set once.
"""

import contextlib
import datetime as dt
import io
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from autoengagement.models import AutoEngagementConfig
from notifications.models import NotificationLog
from tests.factories import (
    AppleDeviceRegistrationFactory,
    AutoEngagementConfigFactory,
    BusinessFactory,
    CustomerFactory,
    WalletPassFactory,
)
from tests.faults.apns_faults import ApnsFaultStandIn
from tests.faults.conftest import service_account_key
from tests.faults.smtp_faults import SmtpFault, SmtpFaultServer
from tests.faults.standins import ACTING_FAULTS, Fault, FcmStandIn, GoogleWalletStandIn, TwilioStandIn
from tests.wallet.certs import KEY_PASSWORD, PASS_TYPE_ID, TEAM_ID
from wallet.models import WalletPass

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
BACKOFF = dt.timedelta(minutes=15)  # AUTO_ENGAGEMENT_RETRY_BACKOFF_MINUTES (default)
TIMEOUT = 0.5  # every client timeout
SLOW = 0.8  # a stand-in's slow answer: a little after the client gave up
FEW, MANY = 3, 8  # customers in a fault case, in an outage case (enough to open a breaker of 3)
TEMPLATE = {"header": "We miss you, {first_name}", "body": "Come back to {business_name}"}
GOOGLE_ISSUER_ID = "3388000000012345678"

Status = NotificationLog.Status


# ---------------------------------------------------------------------------------------------------------------
# One harness per provider: its stand-in pointed at by the settings, customers it can reach, faults injected.


@dataclass
class Reach:
    customer: Any
    recipient: str  # the key of the stand-in's `deliveries` for this customer


class Harness:
    name = ""
    channel = ""

    @contextlib.contextmanager
    def standin(self, settings, tmp_path, chain) -> Iterator[Any]:
        raise NotImplementedError

    def reach(self, business, number: int) -> Reach:
        raise NotImplementedError

    def inject(self, standin, fault: Any, recipients: list[str]) -> None:
        standin.fault = fault

    def heal(self, standin) -> None:
        standin.fault = self.ok

    ok: Any = Fault.OK


def quiet_customer(business, number: int, **fields) -> Any:
    return CustomerFactory(
        business=business,
        first_name=f"Ana{number}",
        created_at=NOW - dt.timedelta(days=300),
        last_activity_at=NOW - dt.timedelta(days=30),
        **fields,
    )


class TwilioHarness(Harness):
    name, channel = "twilio", "sms"

    @contextlib.contextmanager
    def standin(self, settings, tmp_path, chain):
        with TwilioStandIn(slow_seconds=SLOW) as twilio:
            settings.SMS_CHANNEL = "twilio"
            twilio.configure(settings)
            yield twilio

    def reach(self, business, number):
        phone = f"+1415550{number:04d}"
        return Reach(quiet_customer(business, number, phone=phone), phone)


class FcmHarness(Harness):
    name, channel = "fcm", "push"

    @contextlib.contextmanager
    def standin(self, settings, tmp_path, chain):
        with FcmStandIn(slow_seconds=SLOW) as fcm:
            settings.PUSH_CHANNEL = "fcm"
            fcm.configure(settings, service_account_key(tmp_path, token_uri=fcm.token_uri))
            yield fcm

    def reach(self, business, number):
        token = f"fcm-token-{number}-{secrets.token_hex(8)}"
        return Reach(quiet_customer(business, number, push_token=token), token)


class GoogleHarness(Harness):
    name, channel = "google", "wallet"

    @contextlib.contextmanager
    def standin(self, settings, tmp_path, chain):
        with GoogleWalletStandIn(slow_seconds=SLOW) as google:
            settings.WALLET_CHANNEL = "live"
            settings.APPLE_PASS_TYPE_ID = ""
            settings.GOOGLE_WALLET_ISSUER_ID = GOOGLE_ISSUER_ID
            settings.GOOGLE_WALLET_CLASS_ID = "loyalty"
            settings.GOOGLE_WALLET_TIMEOUT = TIMEOUT
            google.configure(settings, service_account_key(tmp_path, token_uri=google.token_uri))
            yield google

    def reach(self, business, number):
        wallet_pass = WalletPassFactory(platform=WalletPass.Platform.GOOGLE, customer=quiet_customer(business, number))
        return Reach(wallet_pass.customer, f"{GOOGLE_ISSUER_ID}.{wallet_pass.pass_id}")


class ApnsHarness(Harness):
    """Transient faults scripted once per device token (the client's own retry then succeeds); a refused
    connection (the listener down) for the whole invocation."""

    name, channel = "apns", "wallet"

    @contextlib.contextmanager
    def standin(self, settings, tmp_path, chain):
        with ApnsFaultStandIn.from_chain(chain, slow_seconds=SLOW) as apns:
            settings.WALLET_CHANNEL = "live"
            settings.GOOGLE_WALLET_ISSUER_ID = ""
            settings.APPLE_PASS_TYPE_ID = PASS_TYPE_ID
            settings.APPLE_TEAM_ID = TEAM_ID
            settings.APPLE_PASS_CERT_FILE = str(chain.pass_cert_file)
            settings.APPLE_PASS_KEY_FILE = str(chain.pass_key_file)
            settings.APPLE_PASS_KEY_PASSWORD = KEY_PASSWORD
            settings.APPLE_WWDR_CERT_FILE = str(chain.wwdr_file)
            settings.WALLET_WEB_SERVICE_URL = "https://wallet.example.com/wallet/apple"
            settings.APNS_TIMEOUT = TIMEOUT
            # One push at a time: a reset scripted for one token never takes other tokens' streams down with it.
            settings.APNS_CONCURRENCY = 1
            apns.configure(settings)
            yield apns

    def reach(self, business, number):
        wallet_pass = WalletPassFactory(platform=WalletPass.Platform.APPLE, customer=quiet_customer(business, number))
        token = secrets.token_hex(32)
        AppleDeviceRegistrationFactory(wallet_pass=wallet_pass, push_token=token)
        return Reach(wallet_pass.customer, token)

    def inject(self, standin, fault, recipients):
        if fault is Fault.REFUSED:
            standin.fault = fault
            return
        for token in recipients:
            standin.script(token, [fault])


class SmtpHarness(Harness):
    name, channel = "smtp", "email"
    ok = SmtpFault.OK

    @contextlib.contextmanager
    def standin(self, settings, tmp_path, chain):
        with SmtpFaultServer(slow_seconds=SLOW) as smtp:
            settings.EMAIL_CHANNEL = "django"
            smtp.configure(settings)
            settings.EMAIL_TIMEOUT = TIMEOUT
            settings.PUBLIC_BASE_URL = "https://engage.example.com"
            settings.DEFAULT_FROM_EMAIL = "hello@mail.example.com"
            yield smtp

    def reach(self, business, number):
        email = f"ana{number}@example.com"
        return Reach(quiet_customer(business, number, email=email), email)


HARNESSES = {
    harness.name: harness for harness in (TwilioHarness(), FcmHarness(), GoogleHarness(), ApnsHarness(), SmtpHarness())
}


# ---------------------------------------------------------------------------------------------------------------
# The cases: what the first invocation must record for each provider and fault (the contract).

UNKNOWN, RETRYABLE, SENT, FAILED = "unknown", "retryable", "sent", "failed"


@dataclass(frozen=True)
class Case:
    provider: str
    fault_name: str
    fault: Any
    expect: str  # what every message is after the first invocation
    outage: bool = False

    @property
    def customers(self) -> int:
        return MANY if self.outage else FEW

    @property
    def acted(self) -> bool:
        """The stand-in acts on (counts) a request answered with this fault."""
        return self.fault in ACTING_FAULTS or self.fault in (SmtpFault.ACCEPT_THEN_TIMEOUT, SmtpFault.RESET_AFTER_DATA)

    @property
    def id(self) -> str:
        return f"{self.provider}-{self.fault_name}"


HTTP_FAULTS = {
    "accept_then_timeout": Fault.ACCEPT_THEN_TIMEOUT,
    "reset_after_receipt": Fault.RESET_AFTER_RECEIPT,
    "http_500": Fault.HTTP_500,
    "http_503": Fault.HTTP_503,
    "http_503_retry_after": Fault.HTTP_503_RETRY_AFTER,
    "http_429": Fault.HTTP_429,
    "refused": Fault.REFUSED,
    "hanging": Fault.HANGING,
}
EXPECTED = {
    # Twilio and Google Wallet: only what provably did not reach them is retried (429, no connection).
    "twilio": dict.fromkeys(HTTP_FAULTS, UNKNOWN) | {"http_429": RETRYABLE, "refused": RETRYABLE},
    "google": dict.fromkeys(HTTP_FAULTS, UNKNOWN) | {"http_429": RETRYABLE, "refused": RETRYABLE},
    # FCM documents 503 UNAVAILABLE as not processed.
    "fcm": dict.fromkeys(HTTP_FAULTS, UNKNOWN)
    | dict.fromkeys(("http_503", "http_503_retry_after", "http_429", "refused"), RETRYABLE),
    # APNs retries every transient fault itself: once per token, then the push goes.
    "apns": dict.fromkeys(HTTP_FAULTS, SENT) | {"refused": RETRYABLE},
}
SMTP_FAULTS = {
    "accept_then_timeout": (SmtpFault.ACCEPT_THEN_TIMEOUT, UNKNOWN),
    "reset_after_data": (SmtpFault.RESET_AFTER_DATA, UNKNOWN),
    "451_at_data": (SmtpFault.TEMP_FAIL_AT_DATA, RETRYABLE),
    "554_at_data": (SmtpFault.PERM_FAIL_AT_DATA, FAILED),
    "drop_before_data": (SmtpFault.DROP_BEFORE_DATA, RETRYABLE),
    "refused": (SmtpFault.REFUSED, RETRYABLE),
    "hanging": (SmtpFault.HANGING, RETRYABLE),
}

CASES = [
    *(
        Case(provider, name, HTTP_FAULTS[name], expected[name])
        for provider, expected in EXPECTED.items()
        for name in HTTP_FAULTS
    ),
    *(Case("smtp", name, fault, expect) for name, (fault, expect) in SMTP_FAULTS.items()),
    # The provider down for a whole invocation, then back: enough customers to open a breaker of 3.
    *(
        Case(provider, "outage", Fault.REFUSED, RETRYABLE, outage=True)
        for provider in ("twilio", "fcm", "google", "apns")
    ),
    Case("smtp", "outage", SmtpFault.REFUSED, RETRYABLE, outage=True),
]


@pytest.fixture(autouse=True)
def _fast_clients(settings):
    settings.CHANNEL_HTTP_TIMEOUT = TIMEOUT
    settings.CHANNEL_HTTP_MAX_ATTEMPTS = 2
    settings.CHANNEL_HTTP_BACKOFF_BASE = 0.01
    settings.CHANNEL_HTTP_CONCURRENCY = 4
    settings.TWILIO_RATE_LIMIT = settings.FCM_RATE_LIMIT = 0
    settings.EMAIL_TIMEOUT = TIMEOUT
    settings.APNS_TIMEOUT = TIMEOUT
    settings.GOOGLE_WALLET_TIMEOUT = TIMEOUT
    settings.WALLET_MAX_RETRIES = 1
    settings.WALLET_RETRY_BACKOFF = 0.01
    settings.AUTO_ENGAGEMENT_BREAKER_THRESHOLD = 10


def invoke(now: dt.datetime, *business_ids: str) -> tuple[dict[str, Any], int]:
    """One `run_auto_engagement --format json`: its JSON summary (the last stdout line) and its exit status."""
    out = io.StringIO()
    args = ["--now", now.isoformat(), "--format", "json"]
    for business_id in business_ids:
        args += ["--business", business_id]
    code = 0
    try:  # stderr: the warning that --now is far from the clock
        call_command("run_auto_engagement", *args, stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        code = exc.returncode
    return json.loads(out.getvalue().strip().splitlines()[-1]), code


def rows_of(config: AutoEngagementConfig) -> list[NotificationLog]:
    return list(NotificationLog.objects.filter(config=config).order_by("customer_id"))


def counts(**values: int) -> dict[str, int]:
    return {"sent": 0, "failed": 0, "retryable": 0, "unknown": 0} | values


def setup_business(harness: Harness, customers: int) -> tuple[AutoEngagementConfig, list[Reach]]:
    config = AutoEngagementConfigFactory(
        business=BusinessFactory(name="Bean Bar"), channels=[harness.channel], message_template=TEMPLATE
    )
    return config, [harness.reach(config.business, number) for number in range(customers)]


def apns_pushes_expected(case: Case) -> int:
    """Pushes the APNs stand-in acts on per token: the scripted fault acted on too when Apple may have acted."""
    return 2 if case.provider == "apns" and case.expect == SENT and case.acted else 1


# ---------------------------------------------------------------------------------------------------------------
# The suite


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_fault_then_recovery(case, settings, tmp_path, fault_cert_chain, delivery_table):
    harness = HARNESSES[case.provider]
    if case.outage:
        settings.AUTO_ENGAGEMENT_BREAKER_THRESHOLD = 3
    started = time.monotonic()
    with harness.standin(settings, tmp_path, fault_cert_chain) as standin:
        config, reached = setup_business(harness, case.customers)
        recipients = [reach.recipient for reach in reached]
        business_id = config.business.business_id
        n = len(reached)

        # 1. The invocation that meets the fault.
        harness.inject(standin, case.fault, recipients)
        summary, code = invoke(NOW)
        config.refresh_from_db()
        first = rows_of(config)
        assert len(first) == n
        [business] = summary["businesses"]
        at_standin = {recipient: standin.deliveries[recipient] for recipient in recipients}
        if case.expect == UNKNOWN:
            assert {(row.status, row.attempts, row.next_attempt_at) for row in first} == {(Status.UNKNOWN, 1, None)}
            assert at_standin == dict.fromkeys(recipients, 1 if case.acted else 0)
            # Nothing sent and every outcome unknown: loud, but nothing to retry.
            assert (code, config.last_run_status, config.retry_at) == (1, "failed", None)
            assert f"{harness.channel}: provider not answering: {n} unknown outcomes" in config.last_run_error
            assert business["channels"] == {harness.channel: counts(unknown=n)}
            assert summary["notifications_unknown"] == n
        elif case.expect == RETRYABLE:
            assert {(row.status, row.next_attempt_at) for row in first} == {(Status.FAILED, NOW + BACKOFF)}
            assert {row.attempts for row in first} <= {0, 1}
            assert at_standin == dict.fromkeys(recipients, 0)
            assert (code, config.last_run_status, business["status"]) == (1, "failed", "failed")
            assert f"{harness.channel}: provider unavailable" in config.last_run_error
            assert config.retry_at == NOW + BACKOFF
            assert business["channels"] == {harness.channel: counts(retryable=n)}
            assert (summary["notifications_retryable"], summary["total_failed"]) == (n, 1)
        elif case.expect == SENT:
            assert {(row.status, row.attempts) for row in first} == {(Status.SENT, 1)}
            assert at_standin == dict.fromkeys(recipients, apns_pushes_expected(case))
            assert (code, config.last_run_status, config.retry_at) == (0, "success", None)
            assert business["channels"] == {harness.channel: counts(sent=n)}
        else:  # FAILED: refused for good
            assert {(row.status, row.attempts, row.next_attempt_at) for row in first} == {(Status.FAILED, 1, None)}
            assert at_standin == dict.fromkeys(recipients, 0)
            assert (code, config.last_run_status, config.retry_at) == (0, "success", None)
            assert business["channels"] == {harness.channel: counts(failed=n)}

        # 2. The fault is gone: the next invocation at the retry time (or a quarter of an hour later).
        harness.heal(standin)
        later = config.retry_at or NOW + BACKOFF
        summary, code = invoke(later)
        config.refresh_from_db()
        second = rows_of(config)
        assert code == 0
        if case.expect == RETRYABLE:
            [business] = summary["businesses"]
            assert business["channels"] == {harness.channel: counts(sent=n)}
            assert (config.last_run_status, config.last_run_error, config.retry_at) == ("success", "", None)
            assert [row.pk for row in second] == [row.pk for row in first]  # retried on the same rows
            assert [(row.status, row.attempts) for row in second] == [(Status.SENT, row.attempts + 1) for row in first]
            assert {row.next_attempt_at for row in second} == {None}
        else:
            assert summary["businesses"] == []  # nothing due: nothing left to retry
            assert [(row.status, row.attempts) for row in second] == [(row.status, row.attempts) for row in first]

        # 3. A forced invocation later the same day sends nothing more: every customer had their message.
        summary, code = invoke(later + dt.timedelta(hours=1), business_id)
        [business] = summary["businesses"]
        assert (code, business["status"], business["audience"], business["notified"]) == (0, "success", 0, 0)

        final = rows_of(config)
        final_status = SENT if case.expect == RETRYABLE else case.expect
        assert {row.status for row in final} == {final_status}
        assert not NotificationLog.objects.filter(status__in=(Status.PENDING, Status.SENDING)).exists()
        assert {row.next_attempt_at for row in final} == {None}
        delivered = {recipient: standin.deliveries[recipient] for recipient in recipients}
        if case.expect == RETRYABLE:
            assert delivered == dict.fromkeys(recipients, 1)  # retried messages went out, once
        elif case.provider == "apns":
            assert delivered == dict.fromkeys(recipients, apns_pushes_expected(case))
            # What the customer sees once: the pass's message field, set to this message (not re-set by the retry).
            for reach in reached:
                text = f"We miss you, {reach.customer.first_name} — Come back to Bean Bar"
                assert WalletPass.objects.get(customer=reach.customer).message_text == text
        else:
            assert delivered == at_standin  # unknown and refused messages are never sent again
        if case.provider != "apns":
            assert max(delivered.values()) <= 1
        delivery_table.append(
            {
                "provider": case.provider,
                "fault": case.fault_name,
                "customers": n,
                "max": max(delivered.values()),
                "total": sum(delivered.values()),
                "requests": sum(standin.requests[recipient] for recipient in recipients),
                "expect": case.expect,
                "seconds": time.monotonic() - started,
            }
        )


# ---------------------------------------------------------------------------------------------------------------
# The circuit breaker during an outage, and the end of retries


NOT_ATTEMPTED = "not attempted: provider unavailable"
BREAKER_CASES = [
    pytest.param("twilio", Fault.REFUSED, id="twilio"),
    pytest.param("fcm", Fault.REFUSED, id="fcm"),
    pytest.param("google", Fault.REFUSED, id="google"),
    pytest.param("apns", Fault.REFUSED, id="apns"),
    pytest.param("smtp", SmtpFault.REFUSED, id="smtp"),
]


@pytest.mark.parametrize(("provider", "fault"), BREAKER_CASES)
def test_outage_opens_the_breaker_and_the_rest_is_not_attempted(provider, fault, settings, tmp_path, fault_cert_chain):
    """Down for the whole invocation: after 3 consecutive failures the provider is not called again; the messages
    it never saw are retryable failures 'not attempted: provider unavailable ...' whose attempts do not count."""
    harness = HARNESSES[provider]
    settings.AUTO_ENGAGEMENT_BREAKER_THRESHOLD = 3
    with harness.standin(settings, tmp_path, fault_cert_chain) as standin:
        config, reached = setup_business(harness, MANY)
        harness.inject(standin, fault, [reach.recipient for reach in reached])
        summary, code = invoke(NOW)
        config.refresh_from_db()
        rows = rows_of(config)
        assert (code, config.last_run_status, summary["notifications_retryable"]) == (1, "failed", MANY)
        assert config.last_run_error.startswith(f"{harness.channel}: provider unavailable: ")
        assert "consecutive failures" in config.last_run_error  # the breaker opened
        assert {(row.status, row.next_attempt_at) for row in rows} == {(Status.FAILED, NOW + BACKOFF)}
        not_attempted = [row for row in rows if row.error.startswith(NOT_ATTEMPTED)]
        assert not_attempted
        assert {row.attempts for row in not_attempted} == {0}


@pytest.mark.parametrize(
    ("lateness", "invocations"),
    [
        pytest.param(180, [NOW, NOW + BACKOFF, NOW + 3 * BACKOFF], id="max-attempts"),
        pytest.param(20, [NOW, NOW + BACKOFF], id="lateness-bound"),
    ],
)
def test_retries_end_in_a_final_failure(lateness, invocations, settings, tmp_path, fault_cert_chain):
    """Twilio refusing connections all morning: each invocation at the config's retry_at tries the same rows
    again (backoff 15, then 30 minutes) until AUTO_ENGAGEMENT_MAX_ATTEMPTS or the lateness bound; then the rows
    are final failures, nothing is left to retry, and the provider coming back sends nothing."""
    settings.AUTO_ENGAGEMENT_MAX_LATENESS_MINUTES = lateness
    harness = HARNESSES["twilio"]
    with harness.standin(settings, tmp_path, fault_cert_chain) as standin:
        config, _ = setup_business(harness, FEW)
        standin.fault = Fault.REFUSED
        for number, now in enumerate(invocations, start=1):
            config.refresh_from_db()
            assert config.retry_at == now or number == 1
            summary, code = invoke(now)
            rows = rows_of(config)
            assert {row.attempts for row in rows} == {number}
            if number < len(invocations):
                assert {row.next_attempt_at for row in rows} == {now + BACKOFF * 2 ** (number - 1)}
                assert code == 1
        config.refresh_from_db()
        assert {(row.status, row.next_attempt_at) for row in rows} == {(Status.FAILED, None)}
        assert all(row.error.endswith("; no attempts left today") for row in rows)
        assert config.retry_at is None
        assert summary["businesses"][0]["channels"] == {"sms": counts(failed=FEW)}
        standin.fault = Fault.OK
        summary, code = invoke(invocations[-1] + BACKOFF * 4)
        assert (code, summary["businesses"]) == (0, [])
        summary, code = invoke(invocations[-1] + BACKOFF * 4, config.business.business_id)
        assert (code, summary["businesses"][0]["notified"]) == (0, 0)
        assert standin.deliveries == {}
        assert {row.status for row in rows_of(config)} == {Status.FAILED}


def test_the_invocation_whose_retries_run_out_against_a_dead_provider_fails(settings, tmp_path, fault_cert_chain):
    """The last attempt of the day against a provider still refusing connections: every message on the channel
    failed, none sent, and the provider was unreachable; the business must end `failed` and the command exit 1."""
    harness = HARNESSES["twilio"]
    settings.AUTO_ENGAGEMENT_MAX_ATTEMPTS = 1
    with harness.standin(settings, tmp_path, fault_cert_chain) as standin:
        config, _ = setup_business(harness, FEW)
        standin.fault = Fault.REFUSED
        summary, code = invoke(NOW)
        config.refresh_from_db()
        assert {(row.status, row.next_attempt_at) for row in rows_of(config)} == {(Status.FAILED, None)}
        assert (code, config.last_run_status, summary["total_failed"]) == (1, "failed", 1)
