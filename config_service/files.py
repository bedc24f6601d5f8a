"""Connects file sync (`sync.FileSync`) to the server: files go through the same push path as the API.

Documents are pushed with kind `sync` and author `file:<environment>/<service>.tsk`; schemas
are put without force. A refused file is audited (`sync_failed` or `schema_refused`); the
versions that are created are audited by the push itself.
"""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool

from config_service.auth import file_principal
from config_service.errors import ApiError
from config_service.server import ConfigServer
from config_service.store import AuditEntry
from config_service.sync import FileSync, PushResult, SyncFile, SyncReport


def _not_json(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _rejected(error: ApiError) -> PushResult:
    return PushResult.rejected(error.error, error.message, error.details)


def make_file_sync(server: ConfigServer) -> FileSync:
    """A FileSync over the server's environments and schemas folders."""
    settings = server.settings

    async def push(service: str, environment: str, source: str, *, author: str, kind: str) -> PushResult:
        try:
            server.check_names(service, environment)
            rendered, created = await run_in_threadpool(
                server.push,
                file_principal(author),
                service,
                environment,
                source,
                f"sync {author.removeprefix('file:')}",
                None,
                kind=kind,
            )
        except ApiError as error:
            return _rejected(error)
        if created:
            return PushResult.created(rendered.version)
        return PushResult.unchanged(rendered.version)

    async def push_schema(name: str, source: str, *, author: str) -> PushResult:
        try:
            server.check_names(name)
            try:
                schema = json.loads(source, parse_constant=_not_json)
            except ValueError as error:
                return PushResult.rejected("invalid_schema", f"not valid JSON: {error}")
            record, created = await run_in_threadpool(
                server.put_schema, file_principal(author), name, schema, False, None, source
            )
        except ApiError as error:
            return _rejected(error)
        if created:
            return PushResult.created(record.version)
        return PushResult.unchanged(record.version)

    def last_synced(file: SyncFile) -> str | None:
        if file.kind == "config":
            record = server.store.last_version_of_kind(file.name, file.environment or "", "sync")
            return record.source if record is not None and record.author == file.author else None
        schema = server.store.last_schema_by_author(file.name, file.author)
        return schema.schema if schema is not None else None

    def report(outcome: SyncReport) -> None:
        if outcome.action != "rejected":
            return
        entry = AuditEntry(
            actor=outcome.author,
            action="schema_refused" if outcome.kind == "schema" else "sync_failed",
            service=outcome.name,
            environment=outcome.environment,
            detail={
                "error": outcome.error,
                "message": outcome.message,
                "details": [dict(detail) for detail in outcome.details],
            },
        )
        server.store.write(lambda transaction: transaction.append_audit(entry))

    return FileSync(
        settings.environments_dir,
        settings.schemas_dir,
        settings.pipeline,
        push=push,
        push_schema=push_schema,
        last_synced=last_synced,
        report=report,
        max_bytes=settings.max_body,
    )
