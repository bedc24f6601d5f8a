"""Which server a client asks, without a network: the list given, the moves on failures, and the
core's send flow that both clients perform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from flowtest import core_for

from tskcfg import ServerUnavailable
from tskcfg._effects import Send, drive
from tskcfg._servers import MAX_SERVERS, Servers, may_resend, moves_on, parse_servers

A, B, C = "http://a:8005", "http://b:8005", "https://c"


def test_servers_are_one_url_urls_separated_by_commas_or_a_list() -> None:
    assert parse_servers("http://a:8005/") == (A,)
    assert parse_servers(f" {A} ,{B}/,{C}") == (A, B, C)
    assert parse_servers([A, B]) == (A, B)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("", "not ''"),
        ([], "names no URL"),
        (f"{A},", "not ''"),
        (f"{A},ftp://b", "not 'ftp://b'"),
        (f"{A},{A}/", "listed twice"),
        ("http://", "not 'http://'"),
        ([A, 8005], "a URL or a list of URLs"),
        (",".join(f"http://h{n}" for n in range(MAX_SERVERS + 1)), f"at most {MAX_SERVERS}"),
    ],
)
def test_a_bad_server_list_says_what_is_wrong(given: Any, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_servers(given)


def test_a_failure_moves_to_the_next_server_once_and_the_client_stays_there() -> None:
    servers = Servers([A, B, C])
    assert servers.current == A and servers.in_turn() == (A, B, C)
    servers.failed(A, "refused")
    assert servers.current == B and servers.in_turn() == (B, C, A)
    servers.failed(A, "refused")  # a late failure of a server already left moves nothing
    assert servers.current == B
    servers.failed(B, "503")
    servers.failed(C, "timeout")
    assert servers.current == A  # round the list
    assert Servers([A]).describe() == f"server {A}"
    assert servers.describe() == f"servers {A}, {B}, {C}"


def test_5xx_moves_on_4xx_does_not_and_a_post_is_resent_only_if_it_never_left() -> None:
    assert [status for status in (200, 304, 400, 401, 404, 409, 500, 502, 503) if moves_on(status)] == [500, 502, 503]
    assert may_resend("GET", sent=True) and may_resend("put", sent=True)
    assert may_resend("POST", sent=False) and not may_resend("POST", sent=True)


def answering(tmp_path: Path, outcomes: dict[str, Any]) -> tuple[Any, Any, list[str]]:
    """A core over three servers, the servers it asked, and a `perform` whose answer from each
    server is `outcomes[server]`: a status, or an exception raised as the client would."""
    core = core_for(tmp_path, server=[A, B, C])
    asked: list[str] = []

    def perform(effect: Any) -> Any:
        assert isinstance(effect, Send)
        server = str(effect.request.url).split("/v1/")[0]
        asked.append(server)
        outcome = outcomes[server]
        if isinstance(outcome, Exception):
            raise outcome
        return httpx.Response(outcome, json={"message": f"status {outcome}"}, request=effect.request)

    return core, perform, asked


def test_the_send_flow_asks_the_next_server_on_no_answer_or_5xx_and_stays(tmp_path: Path) -> None:
    core, perform, asked = answering(tmp_path, {A: ServerUnavailable("refused"), B: 503, C: 200})
    response = drive(core.send_flow(core.requests.schema), perform)
    assert response.status_code == 200 and asked == [A, B, C]
    assert core.servers.current == C
    asked.clear()
    drive(core.send_flow(core.requests.schema), perform)
    assert asked == [C]


def test_the_send_flow_takes_a_4xx_as_the_answer(tmp_path: Path) -> None:
    core, perform, asked = answering(tmp_path, {A: 404, B: 200, C: 200})
    assert drive(core.send_flow(core.requests.schema), perform).status_code == 404
    assert asked == [A] and core.servers.current == A


def test_when_no_server_answers_the_send_flow_says_what_each_did(tmp_path: Path) -> None:
    core, perform, asked = answering(tmp_path, {A: ServerUnavailable("A refused"), B: 502, C: 500})
    with pytest.raises(ServerUnavailable) as failed:
        drive(core.send_flow(core.requests.schema), perform)
    assert asked == [A, B, C]
    assert str(failed.value) == (
        "no config server answered: A refused; "
        f"GET {B}/v1/schemas/user-service: the server answered 502: status 502; "
        f"GET {C}/v1/schemas/user-service: the server answered 500: status 500"
    )


def test_one_server_is_asked_once_and_its_5xx_comes_back_as_it_is(tmp_path: Path) -> None:
    core = core_for(tmp_path, server=A)
    asked: list[str] = []

    def perform(effect: Any) -> Any:
        asked.append(str(effect.request.url))
        return httpx.Response(503, request=effect.request)

    assert drive(core.send_flow(core.requests.schema), perform).status_code == 503
    assert len(asked) == 1
