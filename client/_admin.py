"""`AdminClient`: the config server's API for operators and scripts, which the `tskcfg` command mirrors."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from config_service.names import check_name
from tskcfg import exceptions
from tskcfg._admin_requests import AdminRequests, Written
from tskcfg._events import EventStream

TSK_MEDIA_TYPE = "text/x-tsk"
# How many versions or audit entries one request of a listing asks for.
PAGE_SIZE = 100


def entry_time(entry: Mapping[str, Any]) -> datetime | None:
    """When an audit entry happened (`at`, ISO 8601), or None when it does not say."""
    try:
        moment = datetime.fromisoformat(str(entry.get("at", "")).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class AdminClient(AdminRequests):
    """Push, read, compare, roll back and promote documents; schemas, tokens, audit, events.

        with AdminClient("http://localhost:8005", token=admin_token) as admin:
            admin.push("user-service", "staging", source, message="pool 20")
            admin.promote("user-service", "production", from_environment="staging", dry_run=True)

    Each method makes the API call of the same name in docs/server.md and returns the API's
    JSON. A refused request raises `RequestRejected` (`Unauthorized`, `Forbidden`, `NotFound`)
    carrying the server's `code`, message and `details`; no answer, a 5xx or an answer that is
    not the API's raises `ServerUnavailable`; a name that is not valid raises `ValueError`
    before anything is sent. `server` defaults to `CONFIG_STORE`, else http://localhost:8005;
    several servers (a list, or URLs separated by commas) are asked in turn, see docs/client.md.
    """

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    # -- documents

    def push(
        self,
        service: str,
        environment: str,
        source: str | bytes,
        *,
        message: str | None = None,
        if_version: int | None = None,
    ) -> Written:
        """`PUT /v1/configs/{service}/{environment}`: a new version from TSK `source`.

        `if_version` makes it compare-and-set (0: only when there is no version yet).
        """
        headers = {"Content-Type": TSK_MEDIA_TYPE}
        if message:
            headers["X-Config-Message"] = quote(message, safe="")
        if if_version is not None:
            headers["If-Match"] = f'"{if_version}"'
        content = source.encode("utf-8") if isinstance(source, str) else source
        return self._written("PUT", self._document(service, environment), content=content, headers=headers)

    def get(
        self, service: str, environment: str, *, version: int | None = None, path: str | None = None
    ) -> dict[str, Any]:
        """The current version (or `version`): its metadata and `config`, the data in wire form.

        With `path` (a JSON pointer, `/database/pool_size`), one key of the current version:
        `{"path", "value", "version"}`.
        """
        if path is not None and version is not None:
            raise ValueError("give path or version, not both: path reads the current version")
        where = self._document(service, environment, *(("versions", str(version)) if version else ()))
        with self._naming_unknown_service(service):
            return self._json("GET", where, params={"path": path})

    def source(self, service: str, environment: str, version: int) -> str:
        """The TSK source of one version, as it was pushed."""
        path = self._document(service, environment, "versions", str(version))
        with self._naming_unknown_service(service):
            return self._send("GET", path, headers={"Accept": TSK_MEDIA_TYPE}).text

    def history(
        self, service: str, environment: str, *, before: int | None = None, page_size: int = PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """The metadata of every version older than `before` (default: all), newest first, fetched
        a page at a time as the iteration goes on."""
        first = True
        for page in self._pages(self._document(service, environment, "versions"), "versions", {}, before, page_size):
            if first and not page and before is None:
                # The server lists no versions for a service that does not exist; say so, as `get` does.
                self._raise_if_unknown(service)
            first = False
            yield from page

    def diff(
        self,
        service: str,
        environment: str,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
    ) -> dict[str, Any]:
        """What changed from one version to another: `{from, to, changes, unified}`.

        `to_version` defaults to the current version, `from_version` to the one before it
        (`NoPreviousVersion` when there is none).
        """
        with self._naming_unknown_service(service):
            if to_version is None:
                to_version = int(self.get(service, environment)["version"])
            if from_version is None:
                from_version = to_version - 1
            if from_version < 1:
                raise exceptions.NoPreviousVersion(
                    f"{service}/{environment} has no version before version {to_version} to compare it with"
                )
            return self._json(
                "GET",
                self._document(service, environment, "diff"),
                params={"from": from_version, "to": to_version},
            )

    def diff_environments(self, service: str, from_environment: str, to_environment: str) -> dict[str, Any]:
        """What promoting would change: the current documents of two environments compared
        (`GET /v1/diff/{service}`), environment-local paths marked `local`."""
        path = f"/v1/diff/{check_name(service, 'service')}"
        check_name(from_environment, "environment")
        check_name(to_environment, "environment")
        with self._naming_unknown_service(service):
            return self._json("GET", path, params={"from": from_environment, "to": to_environment})

    def rollback(self, service: str, environment: str, version: int, *, message: str | None = None) -> Written:
        """A new version whose source is `version`'s (validated against today's schema)."""
        body: dict[str, Any] = {"version": version}
        if message:
            body["message"] = message
        with self._naming_unknown_service(service):
            return self._written("POST", self._document(service, environment, "rollback"), json=body)

    def promote(
        self,
        service: str,
        environment: str,
        *,
        from_environment: str,
        version: int | None = None,
        message: str | None = None,
        dry_run: bool = False,
    ) -> Written:
        """Copy `from_environment`'s current version (or `version`) into `environment`, the next
        step of the pipeline, keeping `environment`'s local values.

        With `dry_run`, nothing changes: the body is `{would_create, diff, kept_local}`.
        """
        body: dict[str, Any] = {"from": check_name(from_environment, "environment"), "dry_run": dry_run}
        if version is not None:
            body["version"] = version
        if message:
            body["message"] = message
        with self._naming_unknown_service(service):
            return self._written("POST", self._document(service, environment, "promote"), json=body)

    def retire(
        self,
        service: str,
        environment: str,
        *,
        message: str | None = None,
        if_version: int | None = None,
    ) -> Written:
        """`DELETE /v1/configs/{service}/{environment}`: retire the document (a `retire`
        version, no config; reads answer 404 `retired` until a push revives it).

        `created` is False when it was retired already; `if_version` makes it
        compare-and-set on the current version.
        """
        headers: dict[str, str] = {}
        if message:
            headers["X-Config-Message"] = quote(message, safe="")
        if if_version is not None:
            headers["If-Match"] = f'"{if_version}"'
        with self._naming_unknown_service(service):
            return self._written("DELETE", self._document(service, environment), headers=headers)

    def retire_service(self, service: str) -> dict[str, Any]:
        """`DELETE /v1/services/{service}` (admin): retire every environment's document;
        `{"service", "retired": [{environment, version, created}]}`."""
        return self._json("DELETE", f"/v1/services/{check_name(service, 'service')}")

    def take_file(self, service: str, environment: str) -> Written:
        """`POST /v1/configs/{service}/{environment}/sync {"take": "file"}`: end a sync conflict
        by making the server's file `environments/<environment>/<service>.tsk` the next version
        (validated like a push). `created` is False when the file equals the current source.

        `RequestRejected` with code `conflict` when the document is not in conflict, `NotFound`
        when no such file exists on the server.
        """
        with self._naming_unknown_service(service):
            return self._written(
                "POST", self._document(service, environment, "sync"), json={"take": "file"}
            )

    # -- rollouts (docs/rollouts.md)

    def start_rollout(
        self,
        service: str,
        environment: str,
        *,
        source: str | None = None,
        version: int | None = None,
        from_environment: str | None = None,
        steps: Sequence[int] = (10, 50, 100),
        bake_seconds: float = 300,
        max_failed: int = 0,
        message: str | None = None,
    ) -> dict[str, Any]:
        """`POST .../rollouts`: a candidate reaches `steps` percent of the instances in turn, each
        for `bake_seconds`, and is rolled back when more than `max_failed` of them fail to apply
        it. The candidate is TSK `source`, an existing `version`, or a promotion from
        `from_environment` (of its `version`, default its current one). The rollout object.
        """
        body: dict[str, Any] = {"steps": list(steps), "bake_seconds": bake_seconds, "max_failed": max_failed}
        if source is not None:
            body["source"] = source
        if from_environment is not None:
            body["from"] = check_name(from_environment, "environment")
        if version is not None:
            body["version"] = version
        if message:
            body["message"] = message
        with self._naming_unknown_service(service):
            return self._json("POST", self._document(service, environment, "rollouts"), json=body)

    def rollout(self, service: str, environment: str) -> dict[str, Any]:
        """The document's latest rollout: state, step, percent, counts, reason."""
        with self._naming_unknown_service(service):
            return self._json("GET", self._document(service, environment, "rollout"))

    def pause_rollout(self, service: str, environment: str) -> dict[str, Any]:
        """Stop the running rollout's bake clock; its cohort keeps the candidate."""
        return self._rollout_action(service, environment, "pause")

    def resume_rollout(self, service: str, environment: str) -> dict[str, Any]:
        """Start a paused rollout's bake clock again."""
        return self._rollout_action(service, environment, "resume")

    def abort_rollout(self, service: str, environment: str) -> dict[str, Any]:
        """End the rollout: every instance reads the stable version again."""
        return self._rollout_action(service, environment, "abort")

    def complete_rollout(self, service: str, environment: str) -> dict[str, Any]:
        """End the rollout now, the candidate current for everyone."""
        return self._rollout_action(service, environment, "complete")

    def _rollout_action(self, service: str, environment: str, action: str) -> dict[str, Any]:
        with self._naming_unknown_service(service):
            return self._json("POST", self._document(service, environment, "rollout", action))

    def services(self) -> dict[str, Any]:
        """`{"services": [...]}`: every service the token may read, its current version per
        environment and, where a file under environments/ backs the document, its `sync` state
        (`in_sync`, `api_ahead` or `conflict`)."""
        return self._json("GET", "/v1/services")

    def create_service(self, service: str) -> Written:
        """`POST /v1/services` (admin): make `service` exist, so pushes to it are accepted.

        `created` is False when it existed already (from a schema, a file, or an earlier call).
        """
        return self._written("POST", "/v1/services", json={"service": check_name(service, "service")})

    def instances(self, service: str, environment: str) -> dict[str, Any]:
        """`{"instances": [...]}`: who runs which version, who failed, who went stale."""
        with self._naming_unknown_service(service):
            body = self._json("GET", self._document(service, environment, "instances"))
        if not body.get("instances"):
            self._raise_if_unknown(service)
        return body

    # -- schemas

    def schema(self, service: str) -> dict[str, Any]:
        """`{service, version, schema}`: the JSON Schema a service's documents must pass."""
        with self._naming_unknown_service(service):
            return self._json("GET", f"/v1/schemas/{check_name(service, 'service')}")

    def put_schema(self, service: str, schema: Any, *, force: bool = False) -> Written:
        """Store `schema` for `service`; refused (`schema_conflict`) when a current document fails
        it, unless `force` (admin)."""
        return self._written(
            "PUT",
            f"/v1/schemas/{check_name(service, 'service')}",
            json=schema,
            params={"force": "true" if force else None},
        )

    # -- tokens and audit

    def create_token(
        self, name: str, role: str, services: Sequence[str], environments: Sequence[str]
    ) -> dict[str, Any]:
        """A new token; the answer's `token` is the secret, shown this once only."""
        body = {"name": name, "role": role, "services": list(services), "environments": list(environments)}
        return self._json("POST", "/v1/tokens", json=body)

    def tokens(self) -> dict[str, Any]:
        """`{"tokens": [...]}`, never their secrets."""
        return self._json("GET", "/v1/tokens")

    def revoke_token(self, token_id: str | int) -> None:
        """Revoke a token by its id; it stops working at once, on its open streams too."""
        self._send("DELETE", f"/v1/tokens/{quote(str(token_id), safe='')}")

    def audit(
        self,
        *,
        service: str | None = None,
        environment: str | None = None,
        action: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[dict[str, Any]]:
        """Audit entries that match every filter given, newest first, until the first older than
        `since`; fetched a page at a time as the iteration goes on."""
        filters = {"service": service, "environment": environment, "action": action, "actor": actor}
        for page in self._pages("/v1/audit", "entries", filters, None, page_size):
            for entry in page:
                moment = entry_time(entry)
                if since is not None and moment is not None and moment < since:
                    return
                yield entry

    # -- events

    def events(
        self,
        service: str | None = None,
        environment: str | None = None,
        *,
        last_event_id: str | None = None,
    ) -> EventStream:
        """The server's events (`GET /v1/events`), connected now, read for as long as it lasts:

            with admin.events("user-service", "production") as stream:
                for event in stream:          # event.event == "version", event.data is JSON
                    ...

        `last_event_id` resumes after that event, without gaps; each event's `id` is the next
        one to resume from. A refusal raises here; a lost connection raises `ServerUnavailable`
        from the iteration.
        """
        params = {"service": service, "environment": environment}
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        path = "/v1/events"
        response = self._send(
            "GET", path, params=params, headers=headers, stream=True, timeout=httpx.Timeout(None, connect=5.0)
        )
        return EventStream(response, lambda error: self._unreachable(path, error))
