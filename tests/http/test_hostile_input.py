"""End-to-end: whatever a client sends, the answer is a 4xx in the error shape, never a 500 or a crash."""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving import ServerProcess

JSON_ROUTES = [
    ("PUT", "/v1/configs/hostile/staging"),
    ("POST", "/v1/configs/hostile/staging/rollback"),
    ("POST", "/v1/configs/hostile/staging/promote"),
    ("POST", "/v1/instances"),
    ("POST", "/v1/tokens"),
    ("PUT", "/v1/schemas/hostile"),
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda text: text.encode("utf-8")),
    st.sampled_from(
        [b"\xff\xfe", b"[" * 5000, b'{"minimum": NaN}', b'{"a": Infinity}', b'{"source": 1}', b'{"version": -1}', b"{}", b'a: @env(', b"a {\n", b'a: """']
    ),
)


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error", "message", "details"}
        assert "Traceback" not in response.text


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(route=st.sampled_from(JSON_ROUTES), body=bodies, content_type=st.sampled_from(["application/json", "text/x-tsk", "text/plain", "application/xml", ""]))
def test_any_bytes_to_any_write_route(admin: httpx.Client, route: tuple[str, str], body: bytes, content_type: str) -> None:
    method, path = route
    headers = {"Content-Type": content_type} if content_type else {}
    _check(admin.request(method, path, content=body, headers=headers))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(route=st.sampled_from(JSON_ROUTES), value=json_values)
def test_any_json_to_any_write_route(admin: httpx.Client, route: tuple[str, str], value: object) -> None:
    method, path = route
    _check(admin.request(method, path, json=value))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    segment=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30),
    query=st.dictionaries(st.sampled_from(["wait", "limit", "before", "from", "to", "force", "last_event_id"]), st.text(max_size=10), max_size=3),
    header=st.sampled_from(["If-None-Match", "If-Match", "Last-Event-ID", "Accept", "X-Request-ID"]),
    # httpx itself refuses values with surrounding spaces, so those never reach the server.
    header_value=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(str.strip),
)
def test_any_names_parameters_and_headers(
    admin: httpx.Client, segment: str, query: dict[str, str], header: str, header_value: str
) -> None:
    from urllib.parse import quote

    name = quote(segment, safe="")
    for path in (
        f"/v1/configs/{name}/staging",
        f"/v1/configs/hostile/{name}",
        f"/v1/configs/{name}/staging/versions",
        f"/v1/configs/{name}/staging/versions/{name}",
        f"/v1/configs/{name}/staging/diff",
        f"/v1/schemas/{name}",
        f"/v1/diff/{name}",
    ):
        query_for_path = {key: value for key, value in query.items() if key != "wait"}
        _check(admin.get(path, params=query_for_path, headers={header: header_value}))


def test_the_server_is_still_healthy(server: ServerProcess) -> None:
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    assert "Traceback" not in server.log()
