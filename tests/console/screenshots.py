"""`make screenshots`: PNGs of the console's main pages in docs/console/ (not part of `make
test`). Starts a real `tskcfg serve` in a temporary folder, fills it with example documents,
and photographs each page in the system Chromium.

    .venv/bin/python -m tests.console.screenshots [--output docs/console]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright

from config_service import cohorts
from tests.console.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.serving import USER_SERVICE, ServerProcess, make_root, push

BILLING = '''\
# Billing: prices and the payment provider.
name: "billing"
currency: "EUR"
retries: 3

[provider]
url: @env("PROVIDER_URL", "https://pay.example")
timeout: 2.5
'''


def _release(release: str) -> str:
    return USER_SERVICE.replace('version: "1.0.0"', f'version: "{release}"')


def _push(admin: httpx.Client, service: str, environment: str, source: str, message: str) -> None:
    push(admin, service, environment, source, message).raise_for_status()


def _fill(server: ServerProcess) -> None:
    server.create_service("billing")
    with server.client(server.admin_token) as admin:
        _push(admin, "user-service", "development", USER_SERVICE, "first release")
        _push(admin, "user-service", "development", _release("1.1.0"), "raise the release to 1.1.0")
        _push(admin, "user-service", "development", _release("1.2.0").replace("pool_size: 20", "pool_size: 30"),
             "more connections for the new workers")
        _push(admin, "user-service", "staging", USER_SERVICE, "first release")
        _push(admin, "user-service", "production", USER_SERVICE, "first release")
        _push(admin, "billing", "development", BILLING, "billing joins")
        _push(admin, "billing", "staging", BILLING, "billing joins")
        for number, (status, version) in enumerate((("applied", 3), ("applied", 3), ("failed", 2))):
            report = {"instance_id": f"user-service-{number + 1}", "service": "user-service",
                      "environment": "development", "version": version, "status": status}
            if status == "failed":
                report.update(failed_version=3, error="database: could not connect to db.internal:5432")
            admin.post("/v1/instances", json=report)
        admin.post("/v1/instances", json={"instance_id": "user-service-a", "service": "user-service",
                                           "environment": "staging", "version": 1, "status": "applied"})
        _rollout(admin)
        _push(admin, "billing", "production", BILLING, "billing joins")
        admin.delete(
            "/v1/configs/billing/production", headers={"X-Config-Message": "billing%20moved%20to%20payments"}
        ).raise_for_status()


def _rollout(admin: httpx.Client) -> None:
    """user-service/production at the first step of a rollout of staging's release: of the
    instances reading the candidate, most applied it and one failed (one failure allowed)."""
    _push(admin, "user-service", "staging", _release("1.2.0"), "release 1.2.0")
    for number in range(1, 21):
        admin.post("/v1/instances", json={"instance_id": f"web-{number:02d}", "service": "user-service",
                                           "environment": "production", "version": 1, "status": "applied"})
    started = admin.post("/v1/configs/user-service/production/rollouts", json={
        "from": "staging", "steps": [25, 50, 100], "bake_seconds": 900, "max_failed": 1,
        "message": "release 1.2.0, a quarter of the instances first",
    })
    started.raise_for_status()
    candidate = started.json()["candidate"]["version"]
    cohort = [number for number in range(1, 21) if cohorts.reads_candidate(
        cohorts.bucket("user-service", "production", f"web-{number:02d}".encode()), 25)]
    for index, number in enumerate(cohort):
        report: dict[str, Any] = {"instance_id": f"web-{number:02d}", "service": "user-service",
                                  "environment": "production", "version": candidate, "status": "applied"}
        if index == len(cohort) - 1:
            report.update(version=1, status="failed", failed_version=candidate,
                          error="cache: max_size 10000 is over this host's memory limit")
        admin.post("/v1/instances", json=report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=Path("docs/console"))
    output = parser.parse_args().output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tskcfg-screenshots-") as folder:
        server = ServerProcess(make_root(Path(folder) / "server")).start()
        try:
            _fill(server)
            with sync_playwright() as playwright:
                context = playwright.chromium.launch_persistent_context(
                    str(Path(folder) / "profile"),
                    executable_path=str(CHROMIUM),
                    headless=True,
                    args=CHROMIUM_ARGS,
                    viewport={"width": 1366, "height": 860},
                )
                page = context.new_page()
                page.goto(server.url + "/ui/login")
                page.screenshot(path=output / "login.png")
                page.get_by_label("Token").fill(server.admin_token)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(server.url + "/ui/")
                page.wait_for_selector("#live[data-state=on]")
                page.screenshot(path=output / "matrix.png")
                page.goto(server.url + "/ui/doc/user-service/development")
                page.screenshot(path=output / "document.png", full_page=True)
                page.goto(server.url + "/ui/doc/user-service/development/diff?from=1&to=3")
                page.screenshot(path=output / "diff.png", full_page=True)
                page.goto(server.url + "/ui/doc/user-service/development/edit")
                editor = page.get_by_label("TSK source")
                editor.fill(editor.input_value().replace("pool_size: 30", "pool_size: thirty"))
                page.get_by_role("button", name="Push").click()
                page.screenshot(path=output / "edit-error.png", full_page=True)
                page.goto(server.url + "/ui/doc/user-service/staging/promote")
                page.screenshot(path=output / "promote.png", full_page=True)
                page.goto(server.url + "/ui/doc/user-service/production")
                page.screenshot(path=output / "rollout.png", full_page=True)
                page.goto(server.url + "/ui/doc/billing/staging/rollout")
                page.get_by_label("Steps (% of instances)").fill("10, 100")
                page.get_by_label("Failures allowed").fill("many")
                page.get_by_role("button", name="Start the rollout").click()
                page.screenshot(path=output / "rollout-start.png", full_page=True)
                page.goto(server.url + "/ui/doc/billing/production")
                page.screenshot(path=output / "retired.png", full_page=True)
                page.goto(server.url + "/ui/audit")
                page.screenshot(path=output / "audit.png")
                page.goto(server.url + "/ui/tokens")
                page.get_by_label("Name").fill("ci-user-service")
                page.get_by_label("Role").select_option("writer")
                page.get_by_label("Services").fill("user-*")
                page.get_by_role("button", name="Create").click()
                page.screenshot(path=output / "tokens.png", full_page=True)
                context.close()
        finally:
            server.stop()
    for path in sorted(output.glob("*.png")):
        print(path)


if __name__ == "__main__":
    main()
