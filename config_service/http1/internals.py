"""The uvicorn internals `config_service/http1/` builds on, and the check `tskcfg serve` runs at start.

`HotPathProtocol` (protocol.py) and `BoundedHttpToolsProtocol` (bounded.py) subclass uvicorn's
httptools protocol, which is not a public interface: uvicorn renames such things between minor
versions. pyproject.toml pins uvicorn to the versions the tests passed on; if another version is
installed anyway, `missing_uvicorn_internals` names what it lacks, and `tskcfg serve` then says so
and serves with uvicorn's plain protocol (docs/server.md).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

# What this protocol and `BoundedHttpToolsProtocol` override or read of uvicorn's, which is not
# a public interface. uvicorn renames such things between minor versions: before 0.45 there was
# no `_start_asgi_task`, and the hot path was then never asked.
_PROTOCOL_METHODS = (
    "_start_asgi_task",
    "_unset_keepalive_if_required",
    "connection_lost",
    "connection_made",
    "data_received",
    "on_headers_complete",
    "on_message_begin",
    "on_message_complete",
    "on_header",
    "on_response_complete",
    "on_url",
    "send_400_response",
    "shutdown",
    "timeout_keep_alive_handler",
)
_PROTOCOL_FIELDS = (
    "app_state",
    "asgi_version",
    "client",
    "connections",
    "cycle",
    "expect_100_continue",
    "flow",
    "headers",
    "limit_concurrency",
    "loop",
    "parser",
    "pipeline",
    "root_path",
    "scheme",
    "scope",
    "server",
    "server_state",
    "timeout_keep_alive",
    "timeout_keep_alive_task",
    "transport",
)
_CYCLE_FIELDS = (
    "disconnected",
    "keep_alive",
    "message_event",
    "on_response",
    "response_complete",
    "response_started",
)
_FLOW_FIELDS = ("read_paused", "write_paused")
_SERVER_STATE_FIELDS = ("default_headers",)


def missing_uvicorn_internals() -> list[str]:
    """The uvicorn internals `http1/` needs that the installed uvicorn lacks ([]: none)."""
    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    def assigned(function: Any) -> tuple[str, ...]:
        code = getattr(function, "__code__", None)
        return () if code is None else code.co_names + code.co_varnames

    missing = [
        f"HttpToolsProtocol.{name}"
        for name in _PROTOCOL_METHODS
        if not callable(getattr(HttpToolsProtocol, name, None))
    ]
    for owner, fields in (
        (HttpToolsProtocol, _PROTOCOL_FIELDS),
        (RequestResponseCycle, _CYCLE_FIELDS),
        (FlowControl, _FLOW_FIELDS),
        (ServerState, _SERVER_STATE_FIELDS),
    ):
        names = assigned(owner.__init__)
        missing.extend(f"{owner.__name__}.{name}" for name in fields if name not in names)
    if not isinstance(STATUS_LINE, dict) or 200 not in STATUS_LINE:
        missing.append("httptools_impl.STATUS_LINE")
    return missing
