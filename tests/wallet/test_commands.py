import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from autoengagement.models import AutoEngagementConfig
from devtools.demo import DEMO_BUSINESS_ID
from wallet.models import Business, BusinessSession, Customer, WalletPass
from wallet.tokens import hash_token

pytestmark = pytest.mark.django_db


def test_create_business_prints_id_and_token_and_stores_only_the_hash():
    out = io.StringIO()
    call_command(
        "create_business",
        "--name",
        "Bakery",
        "--email",
        "Owner@Example.com",
        "--password",
        "long-enough-pw",
        "--timezone",
        "Europe/Paris",
        stdout=out,
    )
    line = json.loads(out.getvalue().strip())
    business = Business.objects.get(business_id=line["business_id"])
    assert business.email == "owner@example.com"
    assert business.timezone == "Europe/Paris"
    assert business.check_password("long-enough-pw")
    session = BusinessSession.objects.get(business=business)
    assert session.token_hash == hash_token(line["session_token"])
    assert line["session_token"] not in session.token_hash


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--name", "B", "--email", "nope", "--password", "long-enough-pw"], "--email"),
        (["--name", "B", "--email", "a@b.co", "--password", "short"], "--password"),
        (
            ["--name", "B", "--email", "a@b.co", "--password", "long-enough-pw", "--timezone", "Nowhere/City"],
            "--timezone",
        ),
        (["--name", " ", "--email", "a@b.co", "--password", "long-enough-pw"], "--name"),
    ],
)
def test_create_business_rejects_bad_input_with_exit_2_and_writes_nothing(args, named):
    with pytest.raises(CommandError) as excinfo:
        call_command("create_business", *args)
    assert excinfo.value.returncode == 2
    assert named in str(excinfo.value)
    assert not Business.objects.exists()
    assert not BusinessSession.objects.exists()


def test_create_business_rejects_a_taken_email():
    call_command(
        "create_business", "--name", "A", "--email", "a@b.co", "--password", "long-enough-pw", stdout=io.StringIO()
    )
    with pytest.raises(CommandError, match="--email"):
        call_command("create_business", "--name", "B", "--email", "A@B.co", "--password", "long-enough-pw")
    assert Business.objects.count() == 1


def test_seed_demo_is_idempotent():
    call_command("seed_demo", stdout=io.StringIO())
    counts = (
        Business.objects.count(),
        Customer.objects.count(),
        WalletPass.objects.count(),
        AutoEngagementConfig.objects.count(),
    )
    assert counts[1] >= 200
    assert 0 < counts[2] < counts[1]
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    assert "Nothing created" in out.getvalue()
    assert (
        Business.objects.count(),
        Customer.objects.count(),
        WalletPass.objects.count(),
        AutoEngagementConfig.objects.count(),
    ) == counts
    business = Business.objects.get(business_id=DEMO_BUSINESS_ID)
    quiet = business.customers.filter(last_activity_at__isnull=False).values_list("last_activity_at", flat=True)
    assert len({value.date() for value in quiet}) > 30  # a spread of last activity, not one date
