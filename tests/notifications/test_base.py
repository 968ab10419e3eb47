"""The channel-backend interface (notifications/backends/base.py): open if needed, close what was opened, and one
way to build every backend."""

import pytest
from django.utils.module_loading import import_string

from notifications.backends import ALIASES, RECORD
from notifications.backends.base import ChannelBackend, Message, Result


class TokenProvider(ChannelBackend):
    """Opens a connection, then fetches a token on it (refused when told to); close() gives back whatever it holds,
    as a backend's close() must after an open() that failed half-way."""

    def __init__(self, *, channel: str = "", refuse_token: bool = False) -> None:
        super().__init__(channel=channel)
        self.refuse_token = refuse_token
        self.connected = False
        self.token = ""
        self.opens = 0

    @property
    def is_open(self) -> bool:
        return bool(self.token)

    def open(self) -> None:
        if self.is_open:
            return
        self.opens += 1
        self.connected = True
        if self.refuse_token:
            raise PermissionError("token refused")
        self.token = "token"

    def close(self) -> None:
        self.connected, self.token = False, ""

    def _send(self, messages):
        assert self.connected and self.token
        return [Result(log_id=message.log_id, status="sent") for message in messages]


def messages(count: int) -> list[Message]:
    return [Message(log_id=n, recipient=f"r{n}", header="Hi", body="Come back") for n in range(count)]


def test_with_closes_what_an_open_that_failed_half_way_took():
    backend = TokenProvider(refuse_token=True)
    with pytest.raises(PermissionError), backend:
        pytest.fail("the block never runs")
    assert not backend.connected


def test_a_batch_sent_while_closed_opens_the_backend_for_itself_and_closes_it():
    backend = TokenProvider()
    assert [result.status for result in backend.send_batch(messages(2))] == ["sent", "sent"]
    assert (backend.opens, backend.connected) == (1, False)


def test_a_batch_sent_while_closed_closes_what_a_failed_open_took():
    backend = TokenProvider(refuse_token=True)
    with pytest.raises(PermissionError):
        backend.send_batch(messages(1))
    assert not backend.connected


def test_an_open_backend_serves_every_batch_and_stays_open():
    with TokenProvider() as backend:
        backend.send_batch(messages(1))
        backend.send_batch(messages(2))
        assert (backend.opens, backend.connected) == (1, True)
    assert not backend.connected


def test_an_empty_batch_opens_nothing():
    backend = TokenProvider(refuse_token=True)
    assert backend.send_batch([]) == []
    assert backend.opens == 0


@pytest.mark.parametrize(
    ("channel", "path"), [(channel, path) for channel, paths in ALIASES.items() for path in paths.values()]
)
def test_every_backend_is_built_with_keyword_arguments_only(channel, path):
    backend_class = import_string(path)
    assert backend_class(channel=channel).channel == channel
    if path != RECORD:
        assert backend_class().channel == channel, "the class's own channel by default"
    with pytest.raises(TypeError):
        backend_class(channel)
