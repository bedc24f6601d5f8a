"""The client in a rollout: it names itself (X-Instance-ID, X-Config-Cohort) on every read and
report, so the server answers it its cohort's version, and a failed apply of the candidate rolls
the rollout back on its own."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from clienttest import DEVELOPMENT, SERVICE, LiveServer, wait_for

from tskcfg import ConfigClient
from tskcfg._requests import Requests
from tskcfg._servers import Servers
from tskcfg._settings import make_settings

ENVIRONMENT = "production"


def bucket(cohort: str) -> int:
    digest = hashlib.sha256(f"{SERVICE}\0{ENVIRONMENT}\0{cohort}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def named(low: int, high: int, prefix: str) -> str:
    """An instance id whose bucket is in [low, high)."""
    number = 0
    while not low <= bucket(f"{prefix}-{number}") < high:
        number += 1
    return f"{prefix}-{number}"


def with_rate(rate: int) -> str:
    return DEVELOPMENT.replace("rate_limit_per_minute: 10000", f"rate_limit_per_minute: {rate}")


def test_settings_take_the_instance_id_and_cohort_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONFIG_INSTANCE_ID", "web-7")
    monkeypatch.setenv("CONFIG_COHORT", "canary-hosts")
    settings = make_settings(SERVICE, ENVIRONMENT, server="http://127.0.0.1:9")
    assert (settings.instance_id, settings.cohort) == ("web-7", "canary-hosts")
    request = Requests(settings, Servers(settings.servers)).config(settings.servers[0], 3, wait=30)
    assert request.headers["X-Instance-ID"] == "web-7"
    assert request.headers["X-Config-Cohort"] == "canary-hosts"
    # Arguments win over the environment.
    given = make_settings(SERVICE, ENVIRONMENT, server="http://127.0.0.1:9", instance_id="a", cohort="b")
    assert (given.instance_id, given.cohort) == ("a", "b")
    monkeypatch.delenv("CONFIG_COHORT")
    monkeypatch.delenv("CONFIG_INSTANCE_ID")
    plain = make_settings(SERVICE, ENVIRONMENT, server="http://127.0.0.1:9")
    assert plain.cohort is None and ":" in plain.instance_id  # host:pid
    assert "X-Config-Cohort" not in Requests(plain, Servers(plain.servers)).config(plain.servers[0], None).headers


@pytest.mark.parametrize("value", ["", "x" * 201, "caf\u00e9", "tab\there"])
def test_a_cohort_that_cannot_be_a_header_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CONFIG_COHORT", "ok")
    with pytest.raises(ValueError, match="cohort"):
        make_settings(SERVICE, ENVIRONMENT, server="http://127.0.0.1:9", cohort=value or "\x00")
    with pytest.raises(ValueError, match="CONFIG_INSTANCE_ID"):
        make_settings(SERVICE, ENVIRONMENT, server="http://127.0.0.1:9", instance_id=value or "\x00")


def test_a_failed_apply_of_the_candidate_rolls_the_rollout_back(server: LiveServer, tmp_path: Path) -> None:
    server.push(with_rate(1), ENVIRONMENT)
    failing = named(0, 50, "web")
    steady = named(50, 100, "web")

    def client(instance_id: str, **options: Any) -> ConfigClient:
        return ConfigClient(
            SERVICE,
            ENVIRONMENT,
            server=server.url,
            token=server.token,
            cache_dir=tmp_path / instance_id,
            environments_dir=tmp_path / "nowhere",
            instance_id=instance_id,
            **options,
        )

    first, second = client(failing), client(steady, cohort=named(50, 100, "team"))
    refused: list[int] = []

    def check(new: Any, old: Any) -> None:
        if new and new["rate_limit_per_minute"] == 7:
            refused.append(7)
            raise ValueError("rate_limit_per_minute 7 is not allowed here")

    first.on("features")(check)
    with first, second:
        assert first.config.version == second.config.version == 1
        started = server.request(
            "POST",
            f"/v1/configs/{SERVICE}/{ENVIRONMENT}/rollouts",
            json={"source": with_rate(7), "steps": [50, 100], "bake_seconds": 600, "max_failed": 0},
        )
        assert started.status_code == 201, started.text
        # The first is of the cohort: it reads the candidate, fails to apply it, reports it,
        # and that one failure is more than max_failed 0.
        wait_for(lambda: refused)
        rollout = wait_for(
            lambda: (
                (body := server.request("GET", f"/v1/configs/{SERVICE}/{ENVIRONMENT}/rollout").json())[
                    "state"
                ]
                == "rolled_back"
                and body
            ),
            timeout=10,
        )
        assert failing in rollout["reason"] and rollout["counts"]["failed"] == 1
        assert first.config.version == 1 and second.config.version == 1
        instances = server.request("GET", f"/v1/configs/{SERVICE}/{ENVIRONMENT}/instances").json()
        by_id = {item["instance_id"]: item for item in instances["instances"]}
        assert by_id[failing]["status"] == "failed" and by_id[failing]["failed_version"] == 2
        assert by_id[steady]["version"] == 1
        # The second never read the candidate: its cohort (sent as a header) is outside it.
        assert second.config.get("features.rate_limit_per_minute") == 1


def test_reads_carry_the_instance_id_the_server_buckets(server: LiveServer, tmp_path: Path) -> None:
    server.push(with_rate(1), "staging")
    started = server.request(
        "POST",
        f"/v1/configs/{SERVICE}/staging/rollouts",
        json={"source": with_rate(3), "steps": [100], "bake_seconds": 600},
    )
    assert started.status_code == 201, started.text
    client = ConfigClient(
        SERVICE,
        "staging",
        server=server.url,
        token=server.token,
        cache_dir=tmp_path / "cache",
        environments_dir=tmp_path / "nowhere",
        instance_id="any-instance",
    )
    with client:
        # At 100 % every instance that names itself reads the candidate; an anonymous read not.
        assert client.config.version == 2
    anonymous = httpx.get(
        f"{server.url}/v1/configs/{SERVICE}/staging", headers={"Authorization": f"Bearer {server.token}"}
    )
    assert anonymous.json()["version"] == 1
