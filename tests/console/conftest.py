"""Shared by the console's tests: a signed-in console client over plain HTTP, and the system
Chromium driven by Playwright (no browser download; docs/console.md, "Tests")."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving import ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def login_field(html: str) -> str:
    match = re.search(r'name="login" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def sign_in(server: ServerProcess, token: str, **options: Any) -> httpx.Client:
    """An httpx client holding a console session for `token` (as a browser would get it)."""
    client = httpx.Client(base_url=server.url, timeout=10.0, **options)
    page = client.get("/ui/login")
    answer = client.post("/ui/login", data={"token": token, "login": login_field(page.text)})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui/"
    return client


@pytest.fixture(scope="module")
def chromium() -> Iterator[Callable[[], Any]]:
    """`open()` -> a new Playwright browser context on the system Chromium, each with its own
    empty user data dir (so two users never share cookies). Skips only when Chromium is
    missing and CI is unset; under CI a missing Chromium fails."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing under CI (.ci/run installs the chromium package)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); CI installs it")
    from playwright.sync_api import sync_playwright

    folders: list[tempfile.TemporaryDirectory[str]] = []
    contexts: list[Any] = []
    with sync_playwright() as playwright:

        def open_context() -> Any:
            folder = tempfile.TemporaryDirectory(prefix="tskcfg-chromium-")
            folders.append(folder)
            context = playwright.chromium.launch_persistent_context(
                folder.name,
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1366, "height": 860},
            )
            context.set_default_timeout(10_000)
            contexts.append(context)
            return context

        try:
            yield open_context
        finally:
            for context in contexts:
                context.close()
            for folder in folders:
                folder.cleanup()
