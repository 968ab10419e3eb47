"""Email through Django's email framework (EMAIL_CHANNEL=django): any SMTP server, configured by EMAIL_URL.

Each message is multipart (text and HTML), comes from "<business name> <DEFAULT_FROM_EMAIL>" and carries one-click
unsubscribe headers (RFC 2369 List-Unsubscribe, RFC 8058 List-Unsubscribe-Post) pointing at our signed unsubscribe
endpoint under PUBLIC_BASE_URL. The HTML part is the message's own (a journey step's `email.html`, rendered with the
customer's values escaped) when it has one, else the built-in layout of header and body (user text escaped); either
way it ends with the unsubscribe footer. One connection is opened in open() and reused for every batch until
close().

Through an email service provider (EMAIL_BACKEND=anymail.backends.<esp>.EmailBackend, django-anymail), the log row
records the ESP's message id, which its tracking webhooks (bounces, complaints, deliveries) name the message by; an
ESP that refuses the recipient (AnymailRecipientsRefused) is a permanent failure, and any other ESP error after the
request was made an unknown outcome, as for a lost SMTP connection.

SMTP answers are classified per message (RFC 5321 section 4.2.1): a 5xx refusal (unknown mailbox, rejected content)
is permanent, a 4xx one (greylisting, mailbox full, server busy) is retryable. Over SMTP the transaction is driven
step by step so a lost connection is classified by where it was lost: before the message content was written (the
greeting, MAIL, RCPT, the DATA command) the server cannot have accepted it, so the connection is reopened once and
the message retried, else it is retryable; once the content has been written, the server may have accepted it
before the connection dropped (RFC 1047), so the outcome is unknown and never retried. When the server cannot be
reached, the rest of the batch fails as retryable without further attempts.
"""

import contextlib
import logging
import re
import smtplib
from collections.abc import Sequence
from email.utils import make_msgid, parseaddr
from urllib.parse import urlsplit

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as SmtpEmailBackend
from django.core.mail.message import sanitize_address
from django.template.loader import render_to_string

from notifications.backends.base import ChannelBackend, Message, Result, not_attempted
from notifications.channels import Channel
from notifications.unsubscribe import unsubscribe_url

logger = logging.getLogger(__name__)


class LostAfterData(Exception):
    """The connection failed after the message content was written: the server may have accepted it."""


def smtp_transaction(smtp: smtplib.SMTP, *, from_addr: str, to_addrs: list[str], content: bytes) -> None:
    """MAIL, RCPT and DATA as smtplib's sendmail does, raising LostAfterData when the connection fails after the
    whole content was written, while waiting for the server's verdict (a failure before raises smtplib's own
    errors or OSError: the server cannot have accepted the message)."""
    smtp.ehlo_or_helo_if_needed()
    code, reply = smtp.mail(from_addr)
    if code != 250:
        _reset(smtp)
        raise smtplib.SMTPSenderRefused(code, reply, from_addr)
    refused = {}
    for address in to_addrs:
        code, reply = smtp.rcpt(address)
        if code not in (250, 251):
            refused[address] = (code, reply)
    if len(refused) == len(to_addrs):
        _reset(smtp)
        raise smtplib.SMTPRecipientsRefused(refused)
    smtp.putcmd("data")
    code, reply = smtp.getreply()
    if code != 354:
        _reset(smtp)
        raise smtplib.SMTPDataError(code, reply)
    payload = re.sub(rb"(?m)^\.", b"..", content)
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    # A failure while writing the content leaves it without its final dot: the server cannot accept it.
    smtp.send(payload + b".\r\n")
    try:
        code, reply = smtp.getreply()
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        raise LostAfterData(type(exc).__name__) from exc
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)


def _reset(smtp: smtplib.SMTP) -> None:
    """End a refused transaction so the connection takes the next message (as smtplib's sendmail does)."""
    with contextlib.suppress(smtplib.SMTPServerDisconnected):
        smtp.rset()


def sender_address(*, business_name: str) -> str:
    """'"Business name" <DEFAULT_FROM_EMAIL>' with the name quoted (commas, quotes) and header-safe."""
    address = parseaddr(settings.DEFAULT_FROM_EMAIL)[1] or settings.DEFAULT_FROM_EMAIL
    name = " ".join(business_name.split())
    if not name:
        return address
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{address}>'


_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def html_part(message: Message, context: dict[str, str]) -> str:
    """The built-in layout, or the message's own HTML with the unsubscribe footer added before its last </body>
    (at the end when it has none)."""
    if not message.html:
        return render_to_string("notifications/email/reengagement.html", context)
    footer = render_to_string("notifications/email/footer.html", context)
    ends = list(_BODY_END.finditer(message.html))
    if not ends:
        return f"{message.html}\n{footer}"
    at = ends[-1].start()
    return f"{message.html[:at]}{footer}{message.html[at:]}"


def provider_message_id(email: EmailMultiAlternatives) -> str:
    """The id receipts will name the message by: the ESP's own (django-anymail sets `anymail_status.message_id`;
    its tracking events carry it) or, over SMTP, our Message-ID header."""
    status = getattr(email, "anymail_status", None)
    message_id = getattr(status, "message_id", None)
    if isinstance(message_id, str | int) and str(message_id):  # a set when recipients got different ids
        return str(message_id)[:255]
    return email.extra_headers["Message-ID"]


class DjangoEmailBackend(ChannelBackend):
    """`connection`: the Django email backend to send through (default: get_connection(), as EMAIL_URL sets it)."""

    channel = Channel.EMAIL

    def __init__(self, *, channel: str = "", connection: BaseEmailBackend | None = None) -> None:
        super().__init__(channel=channel)
        self.connection = connection
        self._is_open = False
        self._broken = False

    @staticmethod
    def configuration_errors() -> list[str]:
        """What keeps this backend from sending; empty when it is ready (also used by the system check)."""
        errors = []
        base = urlsplit(settings.PUBLIC_BASE_URL)
        if base.scheme not in ("http", "https") or not base.netloc:
            errors.append("PUBLIC_BASE_URL must be this service's absolute URL (unsubscribe links point there).")
        if "@" not in parseaddr(settings.DEFAULT_FROM_EMAIL)[1]:
            errors.append("DEFAULT_FROM_EMAIL must be an email address.")
        return errors

    @property
    def is_open(self) -> bool:
        return self._is_open

    def open(self) -> None:
        if self._is_open:
            return
        if errors := self.configuration_errors():
            raise ImproperlyConfigured("EMAIL_CHANNEL=django: " + " ".join(errors))
        self.connection = self.connection or get_connection(fail_silently=False)
        self._is_open = True
        self._broken = not self._connect()

    def close(self) -> None:
        if self._is_open and self.connection is not None:
            self.connection.close()
        self._is_open = False

    def _connect(self) -> bool:
        try:
            self.connection.open()
        except (OSError, smtplib.SMTPException) as exc:
            logger.warning("mail server unavailable", extra={"error": type(exc).__name__})
            return False
        return True

    def _reconnect(self) -> bool:
        try:
            self.connection.close()
        except (OSError, smtplib.SMTPException):
            logger.info("closing a broken mail connection failed")
        self._broken = not self._connect()
        return not self._broken

    def _send(self, messages: Sequence[Message]) -> list[Result]:
        if self._broken:
            self._reconnect()
        results = [self._send_one(message) for message in messages]
        logger.info(
            "email batch delivered",
            extra={
                "messages": len(messages),
                "sent": sum(result.status == "sent" for result in results),
                "failed": sum(result.status == "failed" for result in results),
            },
        )
        return results

    def build(self, message: Message) -> EmailMultiAlternatives:
        """The email for one message: both parts, the sender, the unsubscribe headers and our Message-ID."""
        link = unsubscribe_url(customer_id=message.customer_id)
        context = {
            "header": message.header,
            "body": message.body,
            "business_name": message.business_name,
            "unsubscribe_url": link,
        }
        domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2]
        email = EmailMultiAlternatives(
            subject=" ".join(message.header.split()),
            body=render_to_string("notifications/email/reengagement.txt", context),
            from_email=sender_address(business_name=message.business_name),
            to=[message.recipient],
            connection=self.connection,
            headers={
                "Message-ID": make_msgid(domain=domain),
                "List-Unsubscribe": f"<{link}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        )
        email.attach_alternative(html_part(message, context), "text/html")
        return email

    def _send_one(self, message: Message) -> Result:
        if self.breaker is not None and not self.breaker.allow():
            return not_attempted(message, self.breaker)
        if self._broken:
            return self._failed(message, "mail server unavailable", retryable=True)
        if not message.customer_id:
            return self._failed(message, "no customer to unsubscribe: refusing to send without a link")
        try:
            email = self.build(message)
            email.message()
        except ValueError:
            return self._failed(message, "invalid email address")
        try:
            try:
                self._deliver(email)
            except smtplib.SMTPServerDisconnected:
                # Dropped before the server took the message (an idle connection closed): reconnect once, resend.
                if not self._reconnect():
                    return self._failed(message, "mail server unavailable", retryable=True)
                self._deliver(email)
        except AnymailRecipientsRefused:
            # The ESP refused the address itself (invalid, or on its suppression list after a bounce or complaint).
            return self._failed(message, "the email service refused the recipient")
        except LostAfterData as exc:
            self._reconnect()
            return self._unknown(message, f"connection lost after the message was sent ({exc})")
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            return self._refused(message, code, reply)
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:
                self._reconnect()
            return self._refused(message, exc.smtp_code, exc.smtp_error)
        except (OSError, smtplib.SMTPException) as exc:
            self._reconnect()
            return self._failed(message, f"mail server error: {type(exc).__name__}", retryable=True)
        self._record(ok=True)
        return Result(log_id=message.log_id, status="sent", provider_message_id=provider_message_id(email))

    def _deliver(self, email: EmailMultiAlternatives) -> None:
        """Over SMTP, one step-by-step transaction (so a lost connection is classified by where it was lost); any
        other Django backend sends as it does, and a failure there may be after the message left: unknown."""
        smtp = getattr(self.connection, "connection", None)
        if not isinstance(self.connection, SmtpEmailBackend) or smtp is None:
            try:
                self.connection.send_messages([email])
            except (OSError, smtplib.SMTPException, AnymailAPIError) as exc:
                raise LostAfterData(type(exc).__name__) from exc
            return
        encoding = email.encoding or settings.DEFAULT_CHARSET
        smtp_transaction(
            smtp,
            from_addr=sanitize_address(email.from_email, encoding),
            to_addrs=[sanitize_address(address, encoding) for address in email.recipients()],
            content=email.message().as_bytes(linesep="\r\n"),
        )

    def _record(self, *, ok: bool, error: str = "") -> None:
        if self.breaker is not None:
            self.breaker.record(ok=ok, error=error)

    def _unknown(self, message: Message, error: str) -> Result:
        self._record(ok=False, error=error)
        logger.warning("email outcome unknown", extra={"log_id": message.log_id, "error": error})
        return Result(log_id=message.log_id, status="unknown", error=error)

    def _refused(self, message: Message, code: int, reply: bytes | str) -> Result:
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        text = text.replace(message.recipient, "<recipient>")
        return self._failed(message, f"SMTP {code}: {text[:300]}", retryable=400 <= code < 500)

    def _failed(self, message: Message, error: str, *, retryable: bool = False) -> Result:
        self._record(ok=not retryable, error=error)
        logger.warning("email not sent", extra={"log_id": message.log_id, "error": error, "retryable": retryable})
        return Result(log_id=message.log_id, status="failed", error=error, retryable=retryable)
