"""The access log (`config_service/http/access_log.py`): one JSON line per request, written in batches."""

from __future__ import annotations

import asyncio
import io
import json

from config_service.http.access_log import AccessLog


def test_each_request_becomes_one_json_line_when_the_batch_is_written() -> None:
    stream = io.StringIO()
    log = AccessLog(stream)

    async def serve() -> None:
        route = "/v1/configs/{service}/{environment}"
        log.add(b"abc-1", "GET", "/v1/configs/api/staging", route, 200, 0.0123456)
        log.add(b"abc-2", "GET", '/odd "path"\\é', "/{path}", 404, 1.5)
        log.add(b"abc-3", "GET", "/v1/configs/api/staging", route, 304, 0.000004)
        assert stream.getvalue() == ""  # not yet: lines are built and written with their batch
        await asyncio.sleep(0.2)

    asyncio.run(serve())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == ["abc-1", "abc-2", "abc-3"]
    assert [line["ms"] for line in lines] == [12.35, 1500.0, 0.0]
    assert lines[1]["path"] == '/odd "path"\\é' and lines[1]["status"] == 404
    assert lines[0]["route"] == "/v1/configs/{service}/{environment}"
    assert all(line["at"].endswith("Z") and len(line["at"]) == 24 for line in lines)
