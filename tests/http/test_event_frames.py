"""How an event of the change hub is written on an event stream (`config_service/http/events.py`)."""

from __future__ import annotations

import json

from config_service.http.events import PING, Framing, LiveStream, frame
from config_service.hub import ChangeEvent, ChangeHub


def test_an_event_is_framed_for_server_sent_events_once() -> None:
    event = ChangeEvent(42, "user-service", "production", 3, "ab12")
    framed = frame(event)
    assert framed is frame(ChangeEvent(42, "user-service", "production", 3, "ab12"))
    lines = framed.decode().split("\n")
    assert lines[:2] == ["id: 42", "event: version"]
    assert lines[2].startswith("data: ")
    assert json.loads(lines[2][len("data: ") :]) == {
        "service": "user-service",
        "environment": "production",
        "version": 3,
        "hash": "ab12",
    }
    assert framed.endswith(b"\n\n")


def test_one_live_stream_decides_what_is_written_whoever_writes_it() -> None:
    """The ASGI loop and the HTTP protocol both write through a `LiveStream`: each event once and
    in order, a ping while the token lives, the end after; the framing is the writer's."""
    allowed = [True]
    hub: ChangeHub[object] = ChangeHub()
    stream = LiveStream(hub.subscribe(), lambda: allowed[0], sent=5)
    old, new = ChangeEvent(5, "user-service", "production", 2, "aa"), ChangeEvent(7, "user-service", "production", 3, "bb")
    assert stream.event(old) is None  # the replay sent it
    assert stream.event(new) == frame(new) and stream.sent == 7
    assert stream.event(new) is None
    stream.passed(9)  # an event this stream does not accept
    assert stream.sent == 9 and stream.event(ChangeEvent(8, "s", "e", 1, "h")) is None
    assert stream.ping() == PING
    stream.framing = Framing(event=lambda event, moved: b"<%d>" % event.sequence, ping=b"<ping>")
    assert stream.event(ChangeEvent(10, "s", "e", 1, "h")) == b"<10>"
    assert stream.ping() == b"<ping>"
    allowed[0] = False  # revoked
    assert stream.ping() is None
