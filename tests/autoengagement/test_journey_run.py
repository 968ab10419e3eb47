"""The daily run following journeys (docs/journeys.md): step k at its after_days once steps 1..k-1 were attempted in
the spell, one step per run date, nothing beyond the last step, a visit starting over at step 1; variants as
journeys.variant_for assigns them; reruns, retries and concurrent workers never sending a step twice; configs
without steps writing exactly the rows they always did."""

import datetime as dt
import io
import json
from collections import Counter, defaultdict

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from autoengagement.journeys import journey_of, mirrored_fields, variant_for
from autoengagement.models import AutoEngagementConfig
from autoengagement.services.audience import audience_queryset, in_holdout, iter_audience_chunks
from autoengagement.services.preview import config_preview
from notifications.backends import record
from notifications.models import NotificationLog
from tests.autoengagement.runs import run
from tests.backends import OutageBackend
from tests.factories import AutoEngagementConfigFactory, BusinessFactory, CustomerFactory, WalletPassFactory, log_row
from tests.faults.standins import Fault, TwilioStandIn
from tests.processes import run_command_workers, twilio_environment
from wallet.services import record_visits

START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)  # a Monday; runs at 09:00 UTC, the configs' send time
DAY = dt.timedelta(days=1)
Status = NotificationLog.Status

JOURNEY = [
    {"after_days": 14, "message": {"header": "One for {first_name}", "body": "We miss you at {business_name}."}},
    {"after_days": 30, "message": {"header": "Two for {first_name}", "body": "{days_inactive} days already."}},
    {"after_days": 60, "message": {"header": "Three for {first_name}", "body": "Last call, {attributes.tier|friend}."}},
]


def journey_config(steps=JOURNEY, **fields):
    """A config with these steps and the seed's fields mirrored from them, as the config API writes it."""
    fields.setdefault("channels", ["email"])
    return AutoEngagementConfigFactory(
        business=BusinessFactory(name="Bean Bar"), steps=steps, **{**mirrored_fields(steps), **fields}
    )


def quiet_since(config, since, with_pass=False, **fields):
    member = CustomerFactory(business=config.business, last_activity_at=since, created_at=since - 400 * DAY, **fields)
    if with_pass:
        WalletPassFactory(customer=member)
    return member


def steps_logged(member) -> list[tuple[dt.date, int, str]]:
    """(run date, step, channel) of the customer's rows, in order."""
    rows = NotificationLog.objects.filter(customer=member).order_by("run_date", "channel")
    return list(rows.values_list("run_date", "step", "channel"))


def day(number: int) -> dt.date:
    return (START + number * DAY).date()


@pytest.mark.django_db
def test_a_customers_journey_over_simulated_weeks():
    """Three steps at 14, 30 and 60 days, the command run every day for 100 days: each step goes out on its day,
    nothing after the last one, a visit ends the journey and the next spell starts again at step 1."""
    config = journey_config(channels=["email"])
    ana = quiet_since(config, START, first_name="Ana", attributes={"tier": "gold"})
    ben = quiet_since(config, START, first_name="Ben")  # visits on day 20, after step 1
    cara = quiet_since(config, START, first_name="Cara")  # visits on day 70, after the whole journey, and starts over
    visits = {20: ben, 70: cara}
    outbox_by_day: dict[int, list[tuple[str, str, str]]] = {}
    steps_by_day: dict[int, dict[str, int]] = {}
    for number in range(101):
        if number in visits:  # before that day's run
            visited_at = START + number * DAY - dt.timedelta(hours=1)
            record_visits(business=config.business, visits=[(visits[number], visited_at)], now=visited_at)
        record.outbox.clear()
        summary = run(now=START + number * DAY)
        assert summary["total_failed"] == 0
        if record.outbox:
            outbox_by_day[number] = sorted(
                (m.message.recipient, m.message.header, m.message.body) for m in record.outbox
            )
            steps_by_day[number] = summary["businesses"][0]["steps"]

    assert steps_logged(ana) == [(day(14), 1, "email"), (day(30), 2, "email"), (day(60), 3, "email")]
    # Ben's visit on day 20 ended his journey: no step 2 on day 30; his new spell's step 1 comes 14 days after it.
    assert steps_logged(ben) == [
        (day(14), 1, "email"),
        (day(34), 1, "email"),
        (day(50), 2, "email"),
        (day(80), 3, "email"),
    ]
    assert steps_logged(cara) == [
        (day(14), 1, "email"),
        (day(30), 2, "email"),
        (day(60), 3, "email"),
        (day(84), 1, "email"),
        (day(100), 2, "email"),
    ]
    assert sorted(outbox_by_day) == [14, 30, 34, 50, 60, 80, 84, 100]
    assert outbox_by_day[14] == sorted(
        (member.email, f"One for {member.first_name}", "We miss you at Bean Bar.") for member in (ana, ben, cara)
    )
    assert outbox_by_day[30] == sorted(
        (member.email, f"Two for {member.first_name}", "30 days already.") for member in (ana, cara)
    )
    assert outbox_by_day[60] == sorted(
        [(ana.email, "Three for Ana", "Last call, gold."), (cara.email, "Three for Cara", "Last call, friend.")]
    )
    assert outbox_by_day[84] == [(cara.email, "One for Cara", "We miss you at Bean Bar.")]
    assert steps_by_day[14] == {"1": 3} and steps_by_day[60] == {"3": 2} and steps_by_day[80] == {"3": 1}
    assert set(NotificationLog.objects.values_list("status", "variant", "html")) == {(Status.SENT, "", "")}


@pytest.mark.django_db
def test_reruns_never_send_a_step_twice_and_a_long_quiet_customer_gets_one_step_a_day():
    """A customer quiet for 70 days when the journey starts is due every step: one per run date, however often the
    command runs that day (forced reruns included), and nothing after the last."""
    config = journey_config(channels=["wallet", "email"])
    member = quiet_since(config, START - 70 * DAY, with_pass=True)
    business_id = config.business.business_id
    for number in range(5):
        today = START + number * DAY
        for now, forced in ((today, False), (today + dt.timedelta(hours=1), False), (today, True), (today, True)):
            run(*(["--business", business_id] if forced else []), now=now)
    assert steps_logged(member) == [
        (day(0), 1, "email"),
        (day(0), 1, "wallet"),
        (day(1), 2, "email"),
        (day(1), 2, "wallet"),
        (day(2), 3, "email"),
        (day(2), 3, "wallet"),
    ]
    assert NotificationLog.objects.count() == 6
    assert set(NotificationLog.objects.values_list("status", "attempts")) == {(Status.SENT, 1)}
    assert sorted((m.channel, m.message.header) for m in record.outbox) == sorted(
        (channel, f"{word} for {member.first_name}")
        for channel in ("wallet", "email")
        for word in ("One", "Two", "Three")
    )


@pytest.fixture
def email_outage(settings):
    settings.EMAIL_CHANNEL = "tests.backends.OutageBackend"
    OutageBackend.down = True
    OutageBackend.sent = []
    yield OutageBackend
    OutageBackend.down = True
    OutageBackend.sent = []


@pytest.mark.django_db
def test_a_retry_resends_the_rows_own_step_and_content_and_plans_no_other_step_that_day(email_outage):
    steps = [
        {
            "after_days": 14,
            "message": {"header": "One", "body": "b"},
            "email": {"subject": "One for {first_name}", "text": "t", "html": "<p>{first_name}</p>"},
        },
        {"after_days": 30, "message": {"header": "Two", "body": "b"}},
    ]
    config = journey_config(steps=steps, channels=["email", "wallet"])
    member = quiet_since(config, START - 70 * DAY, first_name="Ana", with_pass=True)
    out = io.StringIO()
    with pytest.raises(CommandError):  # the email provider is down: the business fails, its message to retry
        call_command("run_auto_engagement", "--now", START.isoformat(), "--format", "json", stdout=out)
    assert json.loads(out.getvalue().splitlines()[-1])["notifications_retryable"] == 1
    # The run's own rows changed in between would show if the retry read anything but the stored row.
    AutoEngagementConfig.objects.filter(pk=config.pk).update(
        steps=[{**step, "message": {"header": "X", "body": "Y"}} for step in steps]
    )
    email_outage.down = False
    retry = run(now=START + dt.timedelta(minutes=30))
    assert retry["businesses"][0]["audience"] == 0  # step 1 was attempted today: no step 2 until tomorrow
    assert [(m.header, m.html) for m in email_outage.sent] == [("One for Ana", "<p>Ana</p>")]
    rows = NotificationLog.objects.filter(customer=member).order_by("channel")
    assert [(row.channel, row.step, row.status, row.attempts) for row in rows] == [
        ("email", 1, Status.SENT, 2),
        ("wallet", 1, Status.SENT, 1),
    ]
    run(now=START + DAY)
    assert sorted(steps_logged(member))[-2:] == [(day(1), 2, "email"), (day(1), 2, "wallet")]


VARIANT_STEP = {
    "after_days": 7,
    "message": {"header": "Plain", "body": "Plain body"},
    "variants": [
        {"name": "A", "weight": 50, "message": {"header": "A for {first_name}", "body": "Body A"}},
        {"name": "B", "weight": 50, "sms": {"text": "B text for {first_name}"}},
    ],
}


@pytest.mark.django_db
def test_variants_recorded_on_rows_are_variant_for_and_carry_their_content():
    config = journey_config(steps=[VARIANT_STEP], channels=["wallet", "sms"], holdout_percent=20)
    members = [
        quiet_since(config, START - 10 * DAY - n * dt.timedelta(minutes=7), first_name=f"C{n}", with_pass=True)
        for n in range(60)
    ]
    run(now=START)
    (step,) = journey_of(steps=[VARIANT_STEP], message_template={}, inactivity_days=7)
    by_customer = defaultdict(dict)
    for row in NotificationLog.objects.all():
        by_customer[row.customer_id][row.channel] = row
    seen = Counter()
    for member in members:
        rows = by_customer[member.pk]
        held = in_holdout(
            config_id=config.config_id,
            customer_id=member.customer_id,
            spell_start=member.last_activity_at,
            holdout_percent=20,
        )
        if held:
            assert {(row.status, row.step, row.variant, row.header) for row in rows.values()} == {
                (Status.HOLDOUT, 1, "", "")
            }
            seen["holdout"] += 1
            continue
        expected = variant_for(
            step, config_id=config.config_id, customer_id=member.customer_id, spell_start=member.last_activity_at
        ).name
        seen[expected] += 1
        assert {row.variant for row in rows.values()} == {expected}
        if expected == "A":
            assert (rows["wallet"].header, rows["sms"].header) == (f"A for {member.first_name}",) * 2
            assert rows["sms"].body == "Body A"
        else:
            assert (rows["wallet"].header, rows["wallet"].body) == ("Plain", "Plain body")
            assert (rows["sms"].header, rows["sms"].body) == ("", f"B text for {member.first_name}")
    assert seen["A"] and seen["B"] and seen["holdout"]
    sent = {(m.channel, m.message.customer_id): m.message for m in record.outbox}
    assert len(sent) == 2 * (seen["A"] + seen["B"])
    for member in members:
        rows = by_customer[member.pk]
        if rows["sms"].status == Status.SENT:
            assert (sent["sms", member.customer_id].header, sent["sms", member.customer_id].body) == (
                rows["sms"].header,
                rows["sms"].body,
            )


@pytest.mark.django_db
def test_a_config_without_steps_writes_the_rows_it_always_did():
    """max_reminders repeats of the one message, inactivity_days apart: every row step 1, no variant, no HTML."""
    config = AutoEngagementConfigFactory(
        business=BusinessFactory(name="Bean Bar"),
        channels=["wallet", "email"],
        inactivity_days=7,
        max_reminders=2,
        holdout_percent=30,
        message_template={"header": "Hi {first_name}", "body": "{days_inactive} days"},
    )
    members = [quiet_since(config, START - 8 * DAY, with_pass=True) for _ in range(30)]
    for number in range(20):
        run(now=START + number * DAY)
    dates = sorted({row[0] for row in NotificationLog.objects.values_list("run_date", "step")})
    assert dates == [day(0), day(7)]  # two reminders, seven days apart, and then no more
    assert NotificationLog.objects.count() == 30 * 2 * 2
    assert set(NotificationLog.objects.values_list("step", "variant", "html")) == {(1, "", "")}
    sent = NotificationLog.objects.filter(status=Status.SENT, run_date=day(7)).first()
    member = next(m for m in members if m.pk == sent.customer_id)
    assert (sent.header, sent.body) == (f"Hi {member.first_name}", "15 days")
    assert {row.status for row in NotificationLog.objects.all()} == {Status.SENT, Status.HOLDOUT}


@pytest.mark.django_db
def test_holdout_customers_get_holdout_rows_at_each_step_and_no_content():
    config = journey_config(channels=["email", "sms"], holdout_percent=50)
    members = [quiet_since(config, START - 70 * DAY) for _ in range(16)]
    held = [
        m
        for m in members
        if in_holdout(
            config_id=config.config_id, customer_id=m.customer_id, spell_start=m.last_activity_at, holdout_percent=50
        )
    ]
    assert 0 < len(held) < len(members)
    for number in range(4):
        run(now=START + number * DAY)
    for member in held:
        rows = NotificationLog.objects.filter(customer=member)
        assert sorted(rows.values_list("run_date", "step", "channel", "status", "header", "body", "variant")) == [
            (day(number), number + 1, channel, Status.HOLDOUT, "", "", "")
            for number in range(3)
            for channel in ("email", "sms")
        ]
    assert not any(m.message.customer_id in {h.customer_id for h in held} for m in record.outbox)


@pytest.mark.django_db
@pytest.mark.parametrize("offset_days", [0, 1, 5, 17, 31])
def test_the_chunked_audience_and_the_queryset_give_each_customer_the_same_step(offset_days):
    """The run reads steps per chunk in Python; the preview counts them with one query: they must agree."""
    config = journey_config(channels=["email"], max_inactivity_days=200)
    now = START + offset_days * DAY
    members = []
    for index, quiet_days in enumerate((3, 13, 14, 15, 29, 30, 31, 45, 59, 60, 61, 90, 150, 199)):
        member = quiet_since(config, START - quiet_days * DAY)
        members.append(member)
        # 0..3 earlier reminders on distinct dates, some before the spell (they do not count), some today.
        rows = []
        for reminder in range(index % 4):
            at = START - (reminder * 9 + index % 5) * DAY + offset_days * DAY
            rows.append(log_row(config, member, at.date(), created_at=at, step=reminder + 1))
        NotificationLog.objects.bulk_create(rows)
    chunked = {
        row["pk"]: row["step"] for chunk in iter_audience_chunks(config=config, now=now, chunk_size=4) for row in chunk
    }
    queried = dict(audience_queryset(config=config, now=now).values_list("pk", "step"))
    assert chunked == queried
    assert len(set(queried.values())) >= 2  # not trivially one step


@pytest.mark.django_db
def test_attributes_are_read_with_the_audience_when_a_template_uses_them():
    """Decoded exactly as stored (numbers, unicode, nested values) on both databases, and not read at all when no
    template of the config uses one."""
    attributes = {"tier": "gold ✨", "points": 12.5, "visits": 3, "tags": ["a", "b"], "empty": ""}
    with_steps = journey_config(channels=["email"])  # step 3 uses {attributes.tier|friend}
    quiet_since(with_steps, START - 20 * DAY, attributes=attributes)
    [[member]] = iter_audience_chunks(config=with_steps, now=START, chunk_size=10)
    assert member["attributes"] == attributes and member["step"] == 1
    plain = AutoEngagementConfigFactory(channels=["email"], inactivity_days=7)
    quiet_since(plain, START - 20 * DAY, attributes=attributes)
    [[member]] = iter_audience_chunks(config=plain, now=START, chunk_size=10)
    assert member["attributes"] is None
    plain.message_template = {"header": "Hi {attributes.tier|there}", "body": "b"}
    plain.save(update_fields=["message_template"])
    [[member]] = iter_audience_chunks(config=plain, now=START, chunk_size=10)
    assert member["attributes"] == attributes
    run(now=START)
    assert NotificationLog.objects.get(customer__business=plain.business).header == "Hi gold ✨"


@pytest.mark.django_db
def test_dry_run_and_preview_report_the_customers_of_each_step():
    config = journey_config(channels=["email"])
    fresh = quiet_since(config, START - 20 * DAY)
    second = quiet_since(config, START - 40 * DAY)
    third = quiet_since(config, START - 65 * DAY)
    quiet_since(config, START - 40 * DAY)  # step 1 of its spell, still
    done = quiet_since(config, START - 90 * DAY)
    earlier = []
    for member, reminders in ((second, 1), (third, 2), (done, 3)):
        for n in range(reminders):
            when = START - (n + 2) * DAY
            earlier.append(log_row(config, member, when.date(), created_at=when, step=n + 1))
    NotificationLog.objects.bulk_create(earlier)
    summary = run("--dry-run", now=START)
    assert summary["businesses"][0]["steps"] == {"1": 2, "2": 1, "3": 1}
    assert NotificationLog.objects.count() == len(earlier)
    preview = config_preview(config=config, now=START)
    assert preview.audience == 4
    assert preview.steps == {"1": 2, "2": 1, "3": 1}
    # The sample is the first customer's own step.
    assert preview.sample["customer_id"] == fresh.customer_id and preview.sample["header"].startswith("One for ")


@pytest.mark.django_db
def test_the_text_output_names_the_steps_of_a_journey_only():
    config = journey_config(channels=["email"])
    quiet_since(config, START - 20 * DAY)
    out = io.StringIO()
    call_command("run_auto_engagement", "--now", START.isoformat(), "--dry-run", stdout=out)
    assert "steps: 1=1" not in out.getvalue()
    second = quiet_since(config, START - 40 * DAY)
    NotificationLog.objects.bulk_create([log_row(config, second, (START - 3 * DAY).date(), step=1)])
    out = io.StringIO()
    call_command("run_auto_engagement", "--now", START.isoformat(), "--dry-run", stdout=out)
    assert "steps: 1=1, 2=1" in out.getvalue()


# Several real processes at once (PostgreSQL).


def run_workers(standin: TwilioStandIn, count: int, *, now: dt.datetime) -> list[dict]:
    return run_command_workers(
        count,
        now=now,
        environment={
            **twilio_environment(standin),
            "AUTO_ENGAGEMENT_PART_SIZE": "60",
            "AUTO_ENGAGEMENT_CHUNK_SIZE": "25",
        },
    )


SMS_JOURNEY = [
    {"after_days": 14, "message": {"header": "h", "body": "b"}, "sms": {"text": "one {first_name}"}},
    {"after_days": 30, "message": {"header": "h", "body": "b"}, "sms": {"text": "two {first_name}"}},
    {"after_days": 60, "message": {"header": "h", "body": "b"}, "sms": {"text": "three {first_name}"}},
]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_send_each_customer_its_step_once():
    """Three processes share one business split into parts (and its chunks), customers at every point of a
    journey: each customer gets one row and one SMS at the provider, of their own step; three more processes the
    same day send nothing twice."""
    config = journey_config(steps=SMS_JOURNEY, channels=["sms"])
    expected: dict[str, int] = {}  # phone -> the step due
    earlier = []
    # (quiet days, earlier reminders in the spell) -> step due: 1, 2, 3, none (journey done), none (not yet).
    for n in range(300):
        quiet_days, reminders, due = [(20, 0, 1), (40, 1, 2), (70, 2, 3), (90, 3, 0), (25, 1, 0)][n % 5]
        member = quiet_since(config, START - quiet_days * DAY, first_name=f"C{n}", phone=f"+1415666{n:04d}")
        for reminder in range(reminders):
            when = START - (reminder + 2) * DAY
            earlier.append(log_row(config, member, when.date(), created_at=when, channel="sms", step=reminder + 1))
        if due:
            expected[member.phone] = due
    NotificationLog.objects.bulk_create(earlier)
    texts: dict[str, list[str]] = defaultdict(list)
    with TwilioStandIn(fault=Fault.ACCEPT_THEN_TIMEOUT, slow_seconds=0.2) as twilio:
        twilio.on_request = lambda request: texts[request.form()["To"]].append(request.form()["Body"])
        first = run_workers(twilio, 3, now=START)
        again = run_workers(twilio, 3, now=START + dt.timedelta(hours=1))
        deliveries = Counter(twilio.deliveries)
    # The run that claimed the business reports its whole day (the parts its helpers ran included).
    [claimed] = [b for out in first for b in out["businesses"] if b["status"] == "success"]
    assert any(b["status"] == "helped" for out in first for b in out["businesses"])  # the work was shared
    assert (claimed["notified"], claimed["steps"]) == (len(expected), {"1": 60, "2": 60, "3": 60})
    assert sum(out["total_notified"] for out in again) == 0
    assert set(deliveries) == set(expected) and set(deliveries.values()) == {1}
    names = dict(config.business.customers.values_list("phone", "first_name"))
    words = {1: "one", 2: "two", 3: "three"}
    assert dict(texts) == {phone: [f"{words[step]} {names[phone]}"] for phone, step in expected.items()}
    new_rows = NotificationLog.objects.filter(run_date=START.date())
    assert Counter(new_rows.values_list("customer__phone", flat=True)) == Counter(dict.fromkeys(expected, 1))
    assert dict(new_rows.values_list("customer__phone", "step")) == expected
    assert set(new_rows.values_list("status", flat=True)) == {Status.SENT}
