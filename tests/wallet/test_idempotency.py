"""Idempotency-Key on business POSTs: replays write nothing, a changed body is a 422, a running twin a 409, and
two concurrent requests with one key never both write (PostgreSQL, real threads)."""

import datetime as dt
import threading

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from tests.api import client_for
from tests.factories import BusinessFactory, BusinessSessionFactory, CustomerFactory
from wallet.api_keys import api_key_create
from wallet.authentication import BusinessSessionRequired
from wallet.idempotency import request_fingerprint
from wallet.models import Customer, IdempotencyRecord

CUSTOMERS = "/api/customers"


def _post(client: APIClient, path: str, body: dict, key: str | None = "k-1"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(path, body, format="json", **headers)


@pytest.mark.django_db
def test_a_retry_replays_the_first_answer_and_writes_nothing(api):
    first = _post(api, CUSTOMERS, {"first_name": "Ada"})
    assert first.status_code == 201
    assert not first.has_header("Idempotent-Replayed")
    for _ in range(3):
        again = _post(api, CUSTOMERS, {"first_name": "Ada"})
        assert again.status_code == 201
        assert again["Idempotent-Replayed"] == "true"
        assert again.content == first.content
    assert Customer.objects.count() == 1


@pytest.mark.django_db
def test_without_the_header_every_post_writes(api):
    _post(api, CUSTOMERS, {"first_name": "Ada"}, key=None)
    _post(api, CUSTOMERS, {"first_name": "Ada"}, key=None)
    assert Customer.objects.count() == 2


@pytest.mark.django_db
def test_the_same_key_with_another_body_or_path_is_422_and_writes_nothing(api, business):
    _post(api, CUSTOMERS, {"first_name": "Ada"})
    response = _post(api, CUSTOMERS, {"first_name": "Grace"})
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["detail"]
    customer = CustomerFactory(business=business)
    response = _post(api, f"{CUSTOMERS}/{customer.customer_id}/activity", {"first_name": "Ada"})
    assert response.status_code == 422
    assert Customer.objects.filter(first_name="Grace").count() == 0


@pytest.mark.django_db
def test_keys_are_per_business(api, other_api):
    assert _post(api, CUSTOMERS, {"first_name": "Ada"}).status_code == 201
    other = _post(other_api, CUSTOMERS, {"first_name": "Ada"})
    assert other.status_code == 201 and not other.has_header("Idempotent-Replayed")
    assert Customer.objects.count() == 2


@pytest.mark.django_db
def test_a_session_and_a_key_of_one_business_share_its_keys(api, business):
    _, raw_key = api_key_create(business=business, name="pos")
    _post(api, CUSTOMERS, {"first_name": "Ada"})
    keyed = APIClient()
    keyed.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert _post(keyed, CUSTOMERS, {"first_name": "Ada"})["Idempotent-Replayed"] == "true"
    assert Customer.objects.count() == 1


@pytest.mark.django_db
def test_a_4xx_answer_is_kept_and_replayed(api):
    first = _post(api, CUSTOMERS, {"first_name": 5})
    assert first.status_code == 400
    again = _post(api, CUSTOMERS, {"first_name": 5})
    assert again.status_code == 400 and again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert IdempotencyRecord.objects.get().status_code == 400


@pytest.mark.django_db
def test_a_request_still_in_flight_is_409(api, business):
    body = b'{"first_name":"Ada"}'
    IdempotencyRecord.objects.create(
        business=business,
        key="k-1",
        fingerprint=request_fingerprint(method="POST", path=CUSTOMERS, body=body),
    )
    response = api.generic("POST", CUSTOMERS, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 409
    assert not Customer.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_bad_keys_are_400_naming_the_header(api, key):
    response = _post(api, CUSTOMERS, {"first_name": "Ada"}, key=key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    assert not Customer.objects.exists()


@pytest.mark.django_db
def test_unauthenticated_posts_store_nothing():
    response = _post(APIClient(), CUSTOMERS, {"first_name": "Ada"})
    assert response.status_code == 401
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
def test_other_posts_replay_too_logout_and_config(api):
    config = {"inactivity_days": 30}
    first = _post(api, "/api/auto-engagement/config", config, key="cfg")
    again = _post(api, "/api/auto-engagement/config", config, key="cfg")
    assert first.status_code == 201 and again.status_code == 201 and again.content == first.content
    assert _post(api, "/api/auth/logout", {}, key="out").status_code == 204
    # The session is revoked now, so authentication fails before the key is looked at.
    assert _post(api, "/api/auth/logout", {}, key="out").status_code == 401


@pytest.mark.django_db
def test_after_24_hours_a_key_starts_afresh_and_the_prune_deletes_old_records(api):
    _post(api, CUSTOMERS, {"first_name": "Ada"})
    IdempotencyRecord.objects.update(created_at=timezone.now() - dt.timedelta(hours=25))
    response = _post(api, CUSTOMERS, {"first_name": "Ada"})
    assert response.status_code == 201 and not response.has_header("Idempotent-Replayed")
    assert Customer.objects.count() == 2
    _post(api, CUSTOMERS, {"first_name": "Ada"}, key="k-2")
    IdempotencyRecord.objects.filter(key="k-2").update(created_at=timezone.now() - dt.timedelta(hours=24, seconds=1))
    call_command("prune_idempotency_keys")
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["k-1"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_write_once():
    assert connection.vendor == "postgresql"
    business = BusinessFactory()
    clients = [client_for(business) for _ in range(8)]
    barrier = threading.Barrier(len(clients))
    answers: list[tuple[int, bytes, bool]] = []
    lock = threading.Lock()

    def send(client: APIClient) -> None:
        try:
            barrier.wait()
            response = _post(client, CUSTOMERS, {"first_name": "Ada"}, key="same")
            with lock:
                answers.append((response.status_code, response.content, response.has_header("Idempotent-Replayed")))
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == len(clients)
    assert Customer.objects.count() == 1
    originals = [answer for answer in answers if answer[0] == 201 and not answer[2]]
    assert len(originals) == 1
    for code, content, _replayed in answers:
        assert code in {201, 409}
        if code == 201:
            assert content == originals[0][1]


class _FailingView(BusinessSessionRequired, APIView):
    """A business POST that fails as a bug would (a 500) the first time and answers 201 after."""

    calls = 0

    def post(self, request):
        type(self).calls += 1
        if type(self).calls == 1:
            raise RuntimeError("boom")
        if type(self).calls == 2:
            return Response({"detail": "busy"}, status=503)
        return Response({"ok": True}, status=201)


@pytest.mark.django_db
def test_a_5xx_or_an_error_frees_the_key_so_the_retry_runs(business):
    token = "idem-test-token"
    BusinessSessionFactory(business=business, token=token)
    view = _FailingView.as_view()

    def send():
        request = APIRequestFactory().post(
            "/x",
            {"a": 1},
            format="json",
            HTTP_X_SESSION_TOKEN=token,
            HTTP_X_BUSINESS_ID=business.business_id,
            HTTP_IDEMPOTENCY_KEY="k-5xx",
        )
        return view(request)

    with pytest.raises(RuntimeError):
        send()
    assert not IdempotencyRecord.objects.exists()
    assert send().status_code == 503
    assert not IdempotencyRecord.objects.exists()
    response = send()
    assert response.status_code == 201
    assert IdempotencyRecord.objects.get().status_code == 201


@pytest.mark.django_db
def test_erasing_a_customer_deletes_the_kept_answers_that_hold_them(api):
    created = _post(api, CUSTOMERS, {"first_name": "Ada", "email": "ada@example.com"}, key="create-ada")
    _post(api, CUSTOMERS, {"first_name": "Bo"}, key="create-bo")
    customer_id = created.json()["customer_id"]

    assert api.delete(f"{CUSTOMERS}/{customer_id}").status_code == 204

    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["create-bo"]
    assert not IdempotencyRecord.objects.filter(response_body__contains="ada@example.com").exists()
