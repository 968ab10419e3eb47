import re
from email.utils import getaddresses
from urllib.parse import urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.template.loader import render_to_string

from notifications.backends import get_backend
from notifications.backends.base import Message
from notifications.backends.email import DjangoEmailBackend
from notifications.consent import OPTED_OUT, skip_reason
from tests.factories import BusinessFactory, CustomerFactory
from tests.notifications.smtp import SmtpServer, free_port


@pytest.fixture
def smtp(settings):
    with SmtpServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = server.port
        settings.EMAIL_HOST_USER = ""
        settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_USE_TLS = False
        settings.EMAIL_USE_SSL = False
        settings.EMAIL_TIMEOUT = 5
        yield server


@pytest.fixture(autouse=True)
def email_settings(settings):
    settings.EMAIL_CHANNEL = "django"
    settings.PUBLIC_BASE_URL = "https://engage.example.com/"
    settings.DEFAULT_FROM_EMAIL = "hello@mail.example.com"


def email(log_id: int = 1, to: str = "ann@example.com", **fields) -> Message:
    values = {
        "header": "We miss you, Ann",
        "body": "Come back for <b>10%</b> off\nthis week.",
        "customer_id": "cust_AAAAAAAAAAAAAAAAAAAA",
        "business_name": "Demo Coffee",
        **fields,
    }
    return Message(log_id=log_id, recipient=to, **values)


def test_the_alias_selects_this_backend():
    assert isinstance(get_backend("email"), DjangoEmailBackend)


def test_a_multipart_message_with_unsubscribe_headers_arrives(smtp):
    with DjangoEmailBackend() as backend:
        [result] = backend.send_batch([email()])
    assert result.status == "sent"
    [received] = smtp.inbox.received
    message = received.message
    assert received.rcpt_tos == ["ann@example.com"]
    assert received.mail_from == "hello@mail.example.com"
    assert message["To"] == "ann@example.com"
    assert getaddresses([message["From"]]) == [("Demo Coffee", "hello@mail.example.com")]
    assert message["Subject"] == "We miss you, Ann"
    assert message["Message-ID"] == result.provider_message_id
    assert result.provider_message_id.endswith("@mail.example.com>")

    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content()
    assert "Come back for <b>10%</b> off\nthis week." in text
    assert "Come back for &lt;b&gt;10%&lt;/b&gt; off<br>this week." in html
    assert "<b>10%</b>" not in html

    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = re.fullmatch(
        r"<(https://engage\.example\.com/unsubscribe/[^>]+/)>", message["List-Unsubscribe"].strip()
    ).group(1)
    assert link in text
    assert f'href="{link}"' in html


@pytest.mark.parametrize(
    ("own", "expected"),
    [
        # The footer goes before the last </body>, whatever its case and spacing.
        ("<html><body><p>Hi <b>Ann</b></p></BODY ></html>", "<html><body><p>Hi <b>Ann</b></p>{footer}</BODY ></html>"),
        # A fragment without </body> gets the footer at its end.
        ("<p>Hi <b>Ann</b></p>", "<p>Hi <b>Ann</b></p>\n{footer}"),
    ],
)
def test_a_messages_own_html_is_the_html_part_with_the_unsubscribe_footer(smtp, own, expected):
    with DjangoEmailBackend() as backend:
        [result] = backend.send_batch([email(html=own)])
    assert result.status == "sent"
    message = smtp.inbox.received[0].message
    html = message.get_body(("html",)).get_content().replace("\r\n", "\n")
    link = re.fullmatch(r"<([^>]+)>", message["List-Unsubscribe"].strip()).group(1)
    footer = render_to_string(
        "notifications/email/footer.html", {"business_name": "Demo Coffee", "unsubscribe_url": link}
    )
    assert "You receive this email as a customer of Demo Coffee." in footer and f'href="{link}"' in footer
    assert html.rstrip("\n") == expected.format(footer=footer).rstrip("\n")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The text part is still the layout of header and body.
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "Come back for <b>10%</b> off\nthis week." in text and link in text


def test_business_names_with_quotes_commas_and_accents_survive(smtp):
    with DjangoEmailBackend() as backend:
        backend.send_batch([email(business_name='Café "Bob", Ltd')])
    message = smtp.inbox.received[0].message
    assert message["From"].addresses[0].display_name == 'Café "Bob", Ltd'
    assert message["From"].addresses[0].addr_spec == "hello@mail.example.com"


def test_one_connection_serves_every_message_of_the_batch(smtp):
    with DjangoEmailBackend() as backend:
        results = backend.send_batch([email(log_id=n, to=f"c{n}@example.com") for n in range(3)])
        results += backend.send_batch([email(log_id=9, to="c9@example.com")])
    assert [result.status for result in results] == ["sent"] * 4
    sessions = {id(received.session) for received in smtp.inbox.received}
    assert len(smtp.inbox.received) == 4
    assert len(sessions) == 1


def test_a_refused_recipient_fails_permanently_and_the_batch_goes_on(smtp):
    smtp.inbox.refused = {"gone@example.com"}
    with DjangoEmailBackend() as backend:
        first, refused, last = backend.send_batch(
            [email(log_id=1), email(log_id=2, to="gone@example.com"), email(log_id=3, to="bo@example.com")]
        )
    assert (first.status, last.status) == ("sent", "sent")
    assert refused.status == "failed"
    assert refused.retryable is False
    assert refused.error.startswith("SMTP 550")
    assert "gone@example.com" not in refused.error
    assert [r.rcpt_tos for r in smtp.inbox.received] == [["ann@example.com"], ["bo@example.com"]]


def test_a_421_is_retryable_and_the_backend_reconnects(smtp):
    smtp.inbox.data_replies = ["421 4.3.2 Service shutting down"]
    with DjangoEmailBackend() as backend:
        first, second = backend.send_batch([email(log_id=1), email(log_id=2, to="bo@example.com")])
    assert (first.status, first.retryable) == ("failed", True)
    assert first.error.startswith("SMTP 421")
    assert second.status == "sent"
    assert [r.rcpt_tos for r in smtp.inbox.received] == [["bo@example.com"]]


def test_an_unreachable_server_fails_the_batch_as_retryable(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()
    settings.EMAIL_TIMEOUT = 2
    with DjangoEmailBackend() as backend:
        results = backend.send_batch([email(log_id=n) for n in range(3)])
    assert all(result.status == "failed" and result.retryable for result in results)
    assert results[0].error == "mail server unavailable"


def test_an_invalid_address_is_a_permanent_failure(smtp):
    with DjangoEmailBackend() as backend:
        bad, good = backend.send_batch([email(log_id=1, to="not an address\n@x"), email(log_id=2)])
    assert (bad.status, bad.retryable, bad.error) == ("failed", False, "invalid email address")
    assert good.status == "sent"


def test_without_a_public_base_url_the_backend_refuses_to_open(settings):
    settings.PUBLIC_BASE_URL = ""
    with pytest.raises(ImproperlyConfigured, match="PUBLIC_BASE_URL"):
        DjangoEmailBackend().open()


@pytest.mark.django_db
def test_the_unsubscribe_link_opts_the_customer_out_so_the_next_run_skips_them(smtp, client):
    customer = CustomerFactory(business=BusinessFactory(name="Demo Coffee"), email="ann@example.com")
    assert skip_reason(channel="email", customer=customer) is None
    with DjangoEmailBackend() as backend:
        backend.send_batch([email(customer_id=customer.customer_id)])
    link = smtp.inbox.received[0].message["List-Unsubscribe"].strip().strip("<>")

    response = client.post(
        urlsplit(link).path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 200
    customer.refresh_from_db()
    assert customer.email_opt_out is True
    assert skip_reason(channel="email", customer=customer) == OPTED_OUT
