"""How an event of the change hub is written on an event stream (`config_service/http/events.py`)."""

from __future__ import annotations

import json

from config_service.http.events import frame
from config_service.hub import ChangeEvent


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
