"""Reading the server's event stream line by line."""

from __future__ import annotations

import json

from tskcfg._events import EventStreamParser


def test_event_stream_parser_reads_events_and_remembers_the_id() -> None:
    parser = EventStreamParser()
    lines = ["retry: 2000", "", ": ping", "id: 7", "event: version", 'data: {"version": 3}', ""]
    events = [event for line in lines if (event := parser.feed(line)) is not None]
    assert (
        len(events) == 1
        and events[0].event == "version"
        and json.loads(events[0].data) == {"version": 3}
    )
    assert parser.last_event_id == "7"

