"""A retired document: a running client keeps its config and waits for the revival (long poll and
SSE, through the server's ASGI read and event paths); a client starting on it raises ConfigRetired."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from clienttest import DEVELOPMENT, LiveServer, wait_for

from tskcfg import AdminClient, ConfigClient, ConfigRetired, NotFound


@pytest.mark.parametrize("mode", ["poll", "sse"])
def test_a_running_client_keeps_its_config_through_a_retire_and_takes_the_revival(
    server: LiveServer, tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    service = f"retire-{mode}"
    server.push(DEVELOPMENT, "development", service=service)
    client = ConfigClient(
        service, "development", server=server.url, token=server.token,
        cache_dir=tmp_path / "cache", environments_dir=tmp_path, mode=mode, poll_interval=0.2,
    )
    requests_before = None
    with client, AdminClient(server.url, server.token) as admin:
        first = client.config
        with caplog.at_level(logging.WARNING):
            retired = admin.retire(service, "development", message="moving")
            assert retired.created and retired.body["kind"] == "retire"
            wait_for(lambda: "was retired on the server" in caplog.text, timeout=5)
        # It keeps running on what it had, and does not hammer the server meanwhile.
        assert client.config is first and client.config.version == 1
        requests_before = caplog.text.count("was retired on the server")
        time.sleep(1.0)
        assert caplog.text.count("was retired on the server") == requests_before == 1
        revived = admin.push(service, "development", DEVELOPMENT.replace("pool_size: 2", "pool_size: 3"))
        assert revived.body["version"] == 3
        wait_for(lambda: client.config.version == 3, timeout=5)
        assert client.config.get("database.pool_size") == 3


def test_a_client_starting_on_a_retired_document_raises(server: LiveServer, tmp_path: Path) -> None:
    server.push(DEVELOPMENT, "development", service="retired-at-start")
    with AdminClient(server.url, server.token) as admin:
        admin.retire("retired-at-start", "development")
    client = ConfigClient(
        "retired-at-start", "development", server=server.url, token=server.token,
        cache_dir=tmp_path / "cache", environments_dir=tmp_path,
    )
    with pytest.raises(ConfigRetired) as raised:
        client.load()
    assert isinstance(raised.value, NotFound)
    assert (raised.value.retired_version, raised.value.last_version) == (2, 1)
