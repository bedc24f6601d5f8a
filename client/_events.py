"""Reading a `text/event-stream` (the server's `GET /v1/events`) line by line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServerEvent:
    """One event of the stream: its id (for resuming), its type and its data."""

    id: str | None
    event: str
    data: str


class EventStreamParser:
    """Turns the lines of a `text/event-stream` into events; remembers the last event id."""

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        self._event = "message"
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> ServerEvent | None:
        if line == "":
            if not self._data:
                self._event, self._id = "message", None
                return None
            event = ServerEvent(id=self._id, event=self._event, data="\n".join(self._data))
            if self._id is not None:
                self.last_event_id = self._id
            self._event, self._data, self._id = "message", [], None
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        return None
