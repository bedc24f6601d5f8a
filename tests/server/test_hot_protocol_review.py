"""What a client can do to the protocol's hot path that a plain request does not: pipelining deep,
repeating headers, HEAD on an event stream, racing a write, stopping the server mid-replay.

Uses the in-process harness of `test_hot_protocol.py` (the real app and store, raw bytes fed
to the protocol `tskcfg serve` runs, a recording transport).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.server.test_hot_protocol import (
    Harness,
    run,
)


def raw_request(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- pipelining ---------------------------------------------------------------------------------


def test_thousands_of_requests_pipelined_behind_a_long_poll_are_all_answered_in_order(
    tmp_path: Path,
) -> None:
    # Each answer written by the hot path starts the next pipelined request; done by
    # recursion, a deep pipeline ran out of stack and the connection was closed unanswered.
    count = 1500

    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        requests = b"".join(
            harness.request(headers={"X-Request-ID": f"r{index}"}) for index in range(count)
        )
        connection.send(harness.long_poll(1) + requests)
        await harness.push(2)
        answers = await connection.wait_for(count + 1)
        assert len(answers) == count + 1
        assert answers[0].status == 200 and answers[0].json()["version"] == 2
        assert [answer.headers["x-request-id"] for answer in answers[1:]] == [
            f"r{index}" for index in range(count)
        ]
        assert all(answer.status == 200 for answer in answers)
        assert not connection.transport.closed

    run(tmp_path, scenario)


def test_a_long_poll_pipelined_after_an_answered_read_is_not_cut_by_the_keep_alive_timer(
    tmp_path: Path,
) -> None:
    # The first answer arms uvicorn's keep-alive timer (the connection looks idle); the long
    # poll right behind it in the same read must disarm it, as any new request does.
    async def scenario(harness: Harness) -> None:
        harness.config.timeout_keep_alive = 0.1
        connection = harness.connect()
        connection.send(harness.request() + harness.long_poll(1, wait=5))
        await asyncio.sleep(0.4)
        assert not connection.transport.closed
        assert harness.hub.waiter_count == 1
        await harness.push(2)
        first, second = await connection.wait_for(2)
        assert first.status == 200 and second.status == 200 and second.json()["version"] == 2

    run(tmp_path, scenario)
