"""Settings: the seed's variables, names that stay inside the cache dir, TLS verification."""

from __future__ import annotations

import os

import pytest
from clienttest import SERVICE

from tskcfg import ConfigClient
from tskcfg._settings import make_settings

# ---------------------------------------------------------------------------- settings and parsing


def test_settings_come_from_the_seed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_ENV", "staging")
    monkeypatch.setenv("CONFIG_STORE", "http://config.internal:9000/")
    monkeypatch.setenv("CONFIG_TOKEN", "secret-token")
    settings = make_settings(SERVICE)
    assert (settings.environment, settings.servers, settings.token) == (
        "staging",
        ("http://config.internal:9000",),
        "secret-token",
    )
    assert settings.instance_id == f"{os.uname().nodename}:{os.getpid()}"
    monkeypatch.delenv("SERVICE_ENV")
    monkeypatch.delenv("CONFIG_STORE")
    assert make_settings(SERVICE).environment == "development"
    assert make_settings(SERVICE).servers == ("http://localhost:8005",)


@pytest.mark.parametrize("name", ["../etc", "User-Service", "", "a" * 64, "user-service\n"])
def test_settings_refuse_names_that_could_escape_the_cache_dir(name: str) -> None:
    with pytest.raises(ValueError, match="is not valid"):
        make_settings(name)
    with pytest.raises(ValueError, match="environment name .* is not valid"):
        make_settings("user-service", name or "\n")


def test_an_http_server_costs_no_ca_bundle_and_an_https_one_is_verified() -> None:
    import ssl

    from tskcfg._settings import tls_verification

    plain = tls_verification("http://127.0.0.1:8005")
    assert isinstance(plain, ssl.SSLContext)
    # Nothing trusted, everything checked: a TLS connection through it could only fail.
    assert plain.cert_store_stats()["x509_ca"] == 0
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.check_hostname
    assert tls_verification("https://config.internal") is True
    client = ConfigClient("user-service", "staging", server="http://127.0.0.1:9")
    try:
        pool = client._http._transport._pool  # type: ignore[attr-defined]
        assert pool._ssl_context.cert_store_stats()["x509_ca"] == 0
    finally:
        client.stop()
