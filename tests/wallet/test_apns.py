import json

import pytest
from cryptography import x509

from engagement_site.curl import HttpRequest, TransferError, perform
from tests.wallet.certs import KEY_PASSWORD, PASS_TYPE_ID
from wallet.apns import ApnsClient, ApnsTls

TOKENS = [f"{n:064x}" for n in range(1, 6)]


def make_client(apns_server, cert_chain, **options) -> ApnsClient:
    tls = ApnsTls(
        cert_file=str(cert_chain.pass_cert_file),
        key_file=str(cert_chain.pass_key_file),
        key_password=KEY_PASSWORD,
        ca_file=str(cert_chain.ca_file),
    )
    defaults = {"timeout": 5, "concurrency": 4, "max_retries": 2, "backoff": 0.01}
    return ApnsClient(host=apns_server.host, topic=PASS_TYPE_ID, tls=tls, **{**defaults, **options})


@pytest.fixture
def apns_client(apns_server, cert_chain):
    client = make_client(apns_server, cert_chain)
    client.open()
    yield client
    client.close()


def test_push_is_an_empty_payload_to_the_device_path_with_the_pass_type_topic(apns_client, apns_server, cert_chain):
    outcomes = apns_client.push_many(tokens=[TOKENS[0]])
    assert outcomes[TOKENS[0]].ok
    assert outcomes[TOKENS[0]].apns_id
    [push] = apns_server.pushes
    assert push.path == f"/3/device/{TOKENS[0]}"
    assert push.headers[":method"] == "POST"
    assert push.headers["apns-topic"] == PASS_TYPE_ID
    assert json.loads(push.body) == {}
    assert x509.load_der_x509_certificate(push.peer_certificate) == cert_chain.pass_cert


def test_a_batch_shares_one_http2_connection(apns_client, apns_server):
    outcomes = apns_client.push_many(tokens=[*TOKENS, TOKENS[0]])
    assert all(outcome.ok for outcome in outcomes.values())
    assert sorted(push.path for push in apns_server.pushes) == sorted(f"/3/device/{token}" for token in TOKENS)
    assert {push.connection for push in apns_server.pushes} == {1}
    assert apns_server.connections == 1


def test_410_reports_the_device_unregistered_without_retrying(apns_client, apns_server):
    apns_server.answer(TOKENS[0], 410)
    outcome = apns_client.push_many(tokens=[TOKENS[0]])[TOKENS[0]]
    assert outcome.unregistered
    assert not outcome.ok
    assert not outcome.retryable
    assert len(apns_server.pushes) == 1


def test_503_is_retried_then_sent(apns_client, apns_server):
    apns_server.answer(TOKENS[0], 503)
    outcome = apns_client.push(token=TOKENS[0])
    assert outcome.ok
    assert len(apns_server.pushes) == 2


def test_429_past_the_retries_is_a_retryable_failure(apns_client, apns_server):
    apns_server.answer(TOKENS[0], 429, 429, 429, 429)
    outcome = apns_client.push(token=TOKENS[0])
    assert not outcome.ok
    assert outcome.retryable
    assert "TooManyRequests" in outcome.error
    assert len(apns_server.pushes) == 3  # the first try and max_retries=2


def test_400_bad_device_token_is_a_dead_registration(apns_client, apns_server):
    apns_server.answer(TOKENS[0], 400)
    outcome = apns_client.push(token=TOKENS[0])
    assert (outcome.ok, outcome.retryable, outcome.unregistered) == (False, False, True)
    assert "BadDeviceToken" in outcome.error
    assert len(apns_server.pushes) == 1


def test_403_is_a_permanent_failure_that_keeps_the_registration(apns_client, apns_server):
    apns_server.answer(TOKENS[0], 403)
    outcome = apns_client.push(token=TOKENS[0])
    assert (outcome.ok, outcome.retryable, outcome.unregistered) == (False, False, False)
    assert "BadCertificate" in outcome.error


def test_the_server_refuses_a_client_without_the_pass_certificate(apns_server, cert_chain):
    request = HttpRequest(
        "POST", f"https://{apns_server.host}/3/device/{TOKENS[0]}", {"apns-topic": PASS_TYPE_ID}, b"{}"
    )
    with pytest.raises(TransferError):
        perform(request, timeout=5, ca_file=str(cert_chain.ca_file))
    assert apns_server.pushes == []


def test_an_unreachable_host_is_a_retryable_failure(cert_chain):
    client = ApnsClient(
        host="127.0.0.1:9",
        topic=PASS_TYPE_ID,
        tls=ApnsTls(
            cert_file=str(cert_chain.pass_cert_file),
            key_file=str(cert_chain.pass_key_file),
            key_password=KEY_PASSWORD,
        ),
        timeout=1,
        concurrency=1,
        max_retries=1,
        backoff=0.01,
    )
    client.open()
    try:
        outcome = client.push(token=TOKENS[0])
    finally:
        client.close()
    assert not outcome.ok
    assert outcome.retryable
    assert "unreachable" in outcome.error


def test_many_pushes_share_few_connections_with_streams_in_flight_together(apns_server, cert_chain):
    """250 pushes with 200 in flight: two HTTP/2 connections (100 streams each), kept for the next batch."""
    client = make_client(apns_server, cert_chain, timeout=10, concurrency=200, max_retries=0)
    tokens = [f"{n:064x}" for n in range(1000, 1250)]
    client.open()
    try:
        first = client.push_many(tokens=tokens[:150])
        second = client.push_many(tokens=tokens[150:])
    finally:
        client.close()
    assert all(outcome.ok for outcome in [*first.values(), *second.values()])
    assert len(apns_server.pushes) == 250
    assert apns_server.connections == 2
