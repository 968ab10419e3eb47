"""Email through Django's email framework (EMAIL_CHANNEL=django): any SMTP server, configured by EMAIL_URL.

Each message is multipart (text and HTML, user text escaped in the HTML), comes from "<business name>
<DEFAULT_FROM_EMAIL>" and carries one-click unsubscribe headers (RFC 2369 List-Unsubscribe, RFC 8058
List-Unsubscribe-Post) pointing at our signed unsubscribe endpoint under PUBLIC_BASE_URL. One connection is
opened in open() and reused for every batch until close().

SMTP answers are classified per message: a 5xx refusal (unknown mailbox, rejected content) is permanent, a
4xx one (greylisting, mailbox full, server busy) is retryable. A dropped connection is reopened once; when
the server cannot be reached, the rest of the batch fails as retryable without further attempts.
"""

import logging
import smtplib
from collections.abc import Sequence
from email.utils import make_msgid, parseaddr
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.template.loader import render_to_string

from notifications.backends.base import ChannelBackend, Message, Result
from notifications.unsubscribe import unsubscribe_url

logger = logging.getLogger(__name__)


def sender_address(*, business_name: str) -> str:
    """'"Business name" <DEFAULT_FROM_EMAIL>' with the name quoted (commas, quotes) and header-safe."""
    address = parseaddr(settings.DEFAULT_FROM_EMAIL)[1] or settings.DEFAULT_FROM_EMAIL
    name = " ".join(business_name.split())
    if not name:
        return address
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{address}>'


class DjangoEmailBackend(ChannelBackend):
    def __init__(self, channel: str = "email", *, connection: BaseEmailBackend | None = None) -> None:
        self.channel = channel
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

    def send_batch(self, messages: Sequence[Message]) -> list[Result]:
        if self._is_open:
            return self._send_all(messages)
        self.open()
        try:
            return self._send_all(messages)
        finally:
            self.close()

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

    def _send_all(self, messages: Sequence[Message]) -> list[Result]:
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
        email.attach_alternative(render_to_string("notifications/email/reengagement.html", context), "text/html")
        return email

    def _send_one(self, message: Message) -> Result:
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
                self.connection.send_messages([email])
            except smtplib.SMTPServerDisconnected:
                # An idle connection was dropped before the server took the message: reconnect once, resend.
                if not self._reconnect():
                    return self._failed(message, "mail server unavailable", retryable=True)
                self.connection.send_messages([email])
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
        return Result(log_id=message.log_id, status="sent", provider_message_id=email.extra_headers["Message-ID"])

    def _refused(self, message: Message, code: int, reply: bytes | str) -> Result:
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        text = text.replace(message.recipient, "<recipient>")
        return self._failed(message, f"SMTP {code}: {text[:300]}", retryable=400 <= code < 500)

    def _failed(self, message: Message, error: str, *, retryable: bool = False) -> Result:
        logger.warning("email not sent", extra={"log_id": message.log_id, "error": error, "retryable": retryable})
        return Result(log_id=message.log_id, status="failed", error=error, retryable=retryable)
