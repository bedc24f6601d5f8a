"""A read repeated byte for byte on its connection is answered without being parsed again
(`config_service/http1/protocol.py`, `_Repeat`), and only while what its answer rests on holds:
the token's record and the version it was answered from.

Driven like tests/http1/test_protocol.py: the real app on a real SQLite store, raw HTTP/1.1 fed
to the protocol `tskcfg serve` runs, over a recording transport.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from config_service.core.access import file_principal
from config_service.core.rollouts import RolloutPlan
from config_service.http import read
from tests.http1.test_protocol import ENVIRONMENT, PATH, SERVICE, Harness, until
from tests.http1.test_protocol import run as run_harness


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The query string of every read the server parsed (its repeats are not)."""
    seen: list[bytes] = []
    parse_head = read.parse_head

    def counting(core, headers, query, service, environment):  # type: ignore[no-untyped-def]
        seen.append(query)
        return parse_head(core, headers, query, service, environment)

    monkeypatch.setattr(read, "parse_head", counting)
    return seen


def test_repeats_are_answered_alike_without_being_parsed_again(tmp_path: Path, parsed: list[bytes]) -> None:
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        plain = harness.request()
        conditional = harness.request(headers={"If-None-Match": '"1"'})
        for _ in range(3):
            connection.send(plain)
        for _ in range(3):
            connection.send(conditional)
        answers = connection.responses()
        assert [answer.status for answer in answers] == [200, 200, 200, 304, 304, 304]
        assert all(answer.json()["version"] == 1 for answer in answers[:3])
        assert len({answer.body for answer in answers[:3]}) == 1
        # Each answer has its own request id, and all of them are counted.
        assert len({answer.headers["x-request-id"] for answer in answers}) == 6
        assert harness.counted(200) == 3 and harness.counted(304) == 3
        assert len(parsed) == 2  # once per distinct request
        assert not harness.state.tasks and not connection.transport.closed

    run_harness(tmp_path, scenario)


def test_a_repeat_after_a_push_gets_the_new_version(tmp_path: Path, parsed: list[bytes]) -> None:
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        conditional = harness.request(headers={"If-None-Match": '"1"'})
        connection.send(conditional)
        connection.send(conditional)
        await harness.push(2)
        connection.send(conditional)
        connection.send(conditional)
        statuses = [(answer.status, answer.headers["etag"]) for answer in connection.responses()]
        assert statuses == [(304, '"1"'), (304, '"1"'), (200, '"2"'), (200, '"2"')]
        assert connection.responses()[2].json()["config"] == {"n": 2}
        assert len(parsed) == 2  # the push made the repeat be read again, once

    run_harness(tmp_path, scenario)


def test_a_repeat_after_the_token_is_revoked_is_refused(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        record, secret = harness.server.tokens.create(harness.admin, "ci", "reader", ["*"], ["*"])
        connection = harness.connect()
        request = harness.request(token=secret)
        connection.send(request)
        connection.send(request)
        harness.server.tokens.revoke(harness.admin, record.id)
        connection.send(request)
        (_, _, refused) = await connection.wait_for(3)
        assert [answer.status for answer in connection.responses()[:2]] == [200, 200]
        assert refused.status == 401 and b'"config"' not in refused.body

    run_harness(tmp_path, scenario)


def test_a_repeat_follows_its_cohort_into_a_rollout(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        request = harness.request(headers={"X-Config-Cohort": "canary-7"})
        connection.send(request)
        harness.server.rollouts.start(
            file_principal("file:test"), SERVICE, ENVIRONMENT,
            RolloutPlan(source="n: 9\n", steps=(100,), bake_seconds=60),
        )  # fmt: skip
        connection.send(request)
        before, during = connection.responses()
        assert before.json()["config"] == {"n": 1}
        assert during.json()["config"] == {"n": 9}  # every bucket is below 100 %
        assert during.headers["x-config-rollout"].endswith("cohort=candidate")

    run_harness(tmp_path, scenario)


def test_a_clients_own_request_id_is_kept_on_every_repeat(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        request = harness.request(headers={"X-Request-ID": "poller-1"})
        for _ in range(3):
            connection.send(request)
        assert [answer.headers["x-request-id"] for answer in connection.responses()] == ["poller-1"] * 3

    run_harness(tmp_path, scenario)


def test_requests_that_close_or_arrive_together_are_not_taken_as_repeats(
    tmp_path: Path, parsed: list[bytes]
) -> None:
    async def scenario(harness: Harness) -> None:
        pipelined = harness.connect()
        two = harness.request() + harness.request()
        pipelined.send(two)
        pipelined.send(two)
        await until(lambda: len(pipelined.responses()) == 4)
        assert len(parsed) == 4  # bytes holding two requests are parsed every time
        closing = harness.connect()
        closing.send(harness.request(version="1.0"))
        assert closing.transport.closed and closing.responses()[0].status == 200
        split = harness.connect()
        request = harness.request()
        split.send(request[:10])
        split.send(request[10:])
        split.send(request)  # whole now, and answered (the earlier halves set nothing up)
        assert [answer.status for answer in split.responses()] == [200, 200]

    run_harness(tmp_path, scenario)


def test_a_retired_document_is_seen_by_a_repeat(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        request = harness.request(PATH)
        connection.send(request)
        await asyncio.to_thread(harness.server.documents.retire, harness.admin, SERVICE, ENVIRONMENT)
        connection.send(request)
        await until(lambda: len(connection.responses()) == 2)
        live, gone = connection.responses()
        assert live.status == 200 and gone.status == 404 and gone.json()["error"] == "retired"

    run_harness(tmp_path, scenario)


def test_bytes_that_began_inside_an_earlier_request_are_never_a_repeat(
    tmp_path: Path, parsed: list[bytes]
) -> None:
    # A read that finishes one request's head and holds a whole request after it must not be
    # kept as "the request": the same bytes again, read between requests, are parsed.
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        padded = harness.request(headers={"X-Pad": "1"})
        cut = padded.index(b"X-Pad")
        tail_and_read = padded[cut:] + harness.request()
        connection.send(padded[:cut])
        connection.send(tail_and_read)
        assert [answer.status for answer in connection.responses()] == [200, 200]
        connection.send(tail_and_read)  # "X-Pad: 1" alone is no request line
        await until(lambda: connection.transport.closed)
        answers = connection.responses()
        assert [answer.status for answer in answers] == [200, 200, 400]

    run_harness(tmp_path, scenario)


def test_a_request_carried_as_a_body_is_not_answered_as_a_repeat(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        other = harness.request(f"/v1/configs/{SERVICE}/production")
        read_this = harness.request()
        head = harness.request(headers={"Content-Length": str(len(other))})
        connection.send(head)
        connection.send(other + read_this)  # the body of the first, then a read
        assert len(connection.responses()) == 2
        connection.send(other + read_this)  # now two requests: both answered
        await until(lambda: len(connection.responses()) == 4)
        third, fourth = connection.responses()[2:]
        assert third.status == 404 and "production" in third.json()["message"]
        assert fourth.status == 200 and fourth.json()["config"] == {"n": 1}

    run_harness(tmp_path, scenario)


def test_a_long_read_is_not_held_for_its_repeats(tmp_path: Path) -> None:
    async def scenario(harness: Harness) -> None:
        connection = harness.connect()
        body = b"x" * 100_000
        request = harness.request(headers={"Content-Length": str(len(body))}) + body
        connection.send(request)
        connection.send(request)
        assert [answer.status for answer in connection.responses()] == [200, 200]
        repeat = connection.protocol._repeat
        assert repeat is not None and repeat.raw is None  # parsed each time, not kept

    run_harness(tmp_path, scenario)
