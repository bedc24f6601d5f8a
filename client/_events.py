"""Reading a `text/event-stream` (the server's `GET /v1/events`) line by line, and an open one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType

import httpx

from tskcfg import exceptions


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


class EventStream:
    """An open `GET /v1/events`: iterate for its events, close (or leave the `with`) to end it."""

    def __init__(
        self,
        response: httpx.Response,
        unreachable: Callable[[httpx.HTTPError], exceptions.ServerUnavailable],
    ) -> None:
        self._response = response
        self._unreachable = unreachable
        self._parser = EventStreamParser()

    @property
    def last_event_id(self) -> str | None:
        """The id of the last event read, to resume from."""
        return self._parser.last_event_id

    def __iter__(self) -> Iterator[ServerEvent]:
        try:
            for line in self._response.iter_lines():
                event = self._parser.feed(line)
                if event is not None:
                    yield event
        except httpx.HTTPError as error:
            raise self._unreachable(error) from None

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
