"""A fault-injecting SMTP stand-in: a small raw-socket ESMTP server on 127.0.0.1 (one thread per connection).

It speaks enough SMTP for smtplib and Django's SMTP backend (EHLO/HELO, AUTH PLAIN/LOGIN accepting anything,
MAIL, RCPT, DATA, RSET, NOOP, QUIT; no STARTTLS). `deliveries` counts each RCPT address of a message whose DATA
was fully received and acted on; `requests` counts each RCPT address of every message that reached the DATA
command. The fault (`SmtpFault`) is global (`fault`) or scripted per recipient (`script(address, [...])`): for a
message, the first of its recipients with something scripted gives the fault, else `fault` does.
"""

import base64
import enum
import socket
import threading
import uuid
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from tests.faults.standins import TcpStandIn, reset_connection


class SmtpFault(enum.Enum):
    OK = "ok"  # 250 after the content: delivered
    REFUSED = "refused"  # the listener is closed (global setting only; also down()/up())
    HANGING = "hanging"  # accept the connection and never send the greeting (scripted: never answer DATA)
    TEMP_FAIL_AT_DATA = "temp_fail_at_data"  # 451 after the content: not delivered
    PERM_FAIL_AT_DATA = "perm_fail_at_data"  # 554 after the content: not delivered
    RESET_AFTER_DATA = "reset_after_data"  # receive the content, deliver, reset the TCP connection without a reply
    ACCEPT_THEN_TIMEOUT = "accept_then_timeout"  # receive the content, deliver, answer 250 after slow_seconds
    DROP_BEFORE_DATA = "drop_before_data"  # close the connection when DATA is sent (after RCPT): nothing delivered


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.content, policy=policy.default)


class _Closed(Exception):
    pass


def _address(argument: str) -> str:
    """The address of a MAIL FROM:/RCPT TO: argument, without <> and parameters."""
    value = argument.split(":", 1)[1].strip() if ":" in argument else argument.strip()
    if value.startswith("<"):
        value = value[1 : value.find(">")] if ">" in value else value[1:]
    else:
        value = value.split(" ", 1)[0]
    return value


class SmtpFaultServer(TcpStandIn):
    """Use as a context manager; point Django at `host`:`port` with configure(settings)."""

    refused_fault = SmtpFault.REFUSED

    def __init__(
        self, *, fault: SmtpFault = SmtpFault.OK, slow_seconds: float = 3.0, hostname: str = "standin.local"
    ) -> None:
        super().__init__(fault=fault, slow_seconds=slow_seconds)
        self.hostname = hostname
        self.messages: list[ReceivedMail] = []  # every message delivered

    def configure(self, settings: Any) -> None:
        """Point Django's SMTP backend at this stand-in (plain SMTP, no credentials)."""
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = self.host, self.port
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False

    def _message_fault(self, rcpt_tos: list[str]) -> Any:
        with self.lock:
            for address in rcpt_tos:
                self.requests[address] += 1
            for address in rcpt_tos:
                queue = self._scripts.get(address)
                if queue:
                    return queue.popleft()
            return self._fault

    def serve_connection(self, sock: socket.socket, release: threading.Event) -> None:
        if self.fault is SmtpFault.HANGING:
            release.wait()
            return
        reader = sock.makefile("rb")
        try:
            self._session(sock, reader, release)
        except _Closed:
            pass
        finally:
            reader.close()

    def _session(self, sock: socket.socket, reader: Any, release: threading.Event) -> None:
        def send(*lines: str) -> None:
            sock.sendall("".join(f"{line}\r\n" for line in lines).encode())

        def read_line() -> str:
            line = reader.readline(65536)
            if not line:
                raise _Closed
            return line.decode("utf-8", "replace").rstrip("\r\n")

        send(f"220 {self.hostname} ESMTP FaultStandIn")
        mail_from: str | None = None
        rcpt_tos: list[str] = []
        while not release.is_set():
            line = read_line()
            verb, _, argument = line.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                send(
                    f"250-{self.hostname}", "250-8BITMIME", "250-SMTPUTF8", "250-AUTH PLAIN LOGIN", "250 SIZE 33554432"
                )
            elif verb == "HELO":
                send(f"250 {self.hostname}")
            elif verb == "AUTH":
                mechanism, _, initial = argument.partition(" ")
                if mechanism.upper() == "LOGIN":
                    send("334 " + base64.b64encode(b"Username:").decode())
                    read_line()
                    send("334 " + base64.b64encode(b"Password:").decode())
                    read_line()
                elif not initial:
                    send("334 ")
                    read_line()
                send("235 2.7.0 Authentication successful")
            elif verb == "MAIL":
                mail_from, rcpt_tos = _address(argument), []
                send("250 2.1.0 Ok")
            elif verb == "RCPT":
                if mail_from is None:
                    send("503 5.5.1 Error: need MAIL command")
                    continue
                rcpt_tos.append(_address(argument))
                send("250 2.1.5 Ok")
            elif verb == "DATA":
                if not rcpt_tos:
                    send("503 5.5.1 Error: need RCPT command")
                    continue
                if not self._data(sock, reader, release, send, mail_from or "", rcpt_tos):
                    return
                mail_from, rcpt_tos = None, []
            elif verb == "RSET":
                mail_from, rcpt_tos = None, []
                send("250 2.0.0 Ok")
            elif verb == "NOOP":
                send("250 2.0.0 Ok")
            elif verb == "QUIT":
                send("221 2.0.0 Bye")
                return
            elif verb == "VRFY":
                send("252 2.0.0 Cannot VRFY user")
            elif verb == "STARTTLS":
                send("454 4.7.0 TLS not available")
            else:
                send("502 5.5.2 Error: command not recognized")

    def _data(self, sock, reader, release, send, mail_from: str, rcpt_tos: list[str]) -> bool:
        """Handle DATA; False when the connection is to end."""
        fault = self._message_fault(rcpt_tos)
        if fault is SmtpFault.DROP_BEFORE_DATA:
            return False
        if fault is SmtpFault.HANGING:
            release.wait()
            return False
        send("354 End data with <CR><LF>.<CR><LF>")
        lines = []
        while True:
            line = reader.readline(1 << 20)
            if not line:
                raise _Closed
            if line in (b".\r\n", b".\n"):
                break
            lines.append(line[1:] if line.startswith(b".") else line)
        content = b"".join(lines)
        if fault in (SmtpFault.TEMP_FAIL_AT_DATA, SmtpFault.PERM_FAIL_AT_DATA):
            if fault is SmtpFault.TEMP_FAIL_AT_DATA:
                send("451 4.3.0 Error: queue file write error, try again later")
            else:
                send("554 5.7.1 Error: message rejected")
            return True
        with self.lock:
            for address in rcpt_tos:
                self.deliveries[address] += 1
            self.messages.append(ReceivedMail(mail_from, list(rcpt_tos), content))
        if fault is SmtpFault.RESET_AFTER_DATA:
            reader.close()
            reset_connection(sock)
            return False
        if fault is SmtpFault.ACCEPT_THEN_TIMEOUT and release.wait(self.slow_seconds):
            return False
        send(f"250 2.0.0 Ok: queued as {uuid.uuid4().hex[:12].upper()}")
        return True
