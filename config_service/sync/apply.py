"""One file through the rules: file sync's pushes go to the core exactly as the API's do.

Documents go through the one-source-of-truth rule (`config_service/core/file_sync.py`): stored
with kind `sync` and author `file:<environment>/<service>.tsk` when the file may change the
document, else a conflict (audited `sync_conflict` by the rule itself). Schemas are put without
force. A refused file is audited (`sync_failed` or `schema_refused`) with the refusal as the
rules raised it; the versions that are created are audited by the push itself.
"""

from __future__ import annotations

import asyncio
import json

from config_service.core.access import file_principal
from config_service.core.refusals import Refused
from config_service.core.wiring import Core
from config_service.sync.files import SyncFile
from config_service.sync.watcher import FileSync, PushResult, SyncReport


def _not_json(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def make_file_sync(core: Core) -> FileSync:
    """A FileSync over the server's environments and schemas folders."""
    settings = core.settings

    async def push(service: str, environment: str, source: str, *, author: str, kind: str) -> PushResult:
        try:
            core.access.check_names(service, environment)
            change = await asyncio.to_thread(core.file_sync.apply, service, environment, source)
        except Refused as refused:
            return PushResult.refused(refused)
        if change.status == "conflict":
            return PushResult.conflict(change.conflict(service, environment), change.version)
        if change.status == "created":
            return PushResult.created(change.version)
        return PushResult.unchanged(change.version)

    async def push_schema(name: str, source: str, *, author: str) -> PushResult:
        try:
            schema = json.loads(source, parse_constant=_not_json)
        except ValueError as error:
            return PushResult.rejected("invalid_schema", f"not valid JSON: {error}")
        try:
            record, created = await asyncio.to_thread(
                core.schemas.put, file_principal(author), name, schema, False, None, source
            )
        except Refused as refused:
            return PushResult.refused(refused)
        if created:
            return PushResult.created(record.version)
        return PushResult.unchanged(record.version)

    def last_synced(file: SyncFile) -> str | None:
        if file.kind == "config":
            return core.file_sync.last_synced_source(file.name, file.environment or "")
        return core.schemas.last_put_by(file.name, file.author)

    def report(outcome: SyncReport) -> None:
        if outcome.action != "rejected" or outcome.refusal is None:
            return
        action = "schema_refused" if outcome.kind == "schema" else "sync_failed"
        core.audit.record_refusal(
            outcome.author, action, outcome.name, outcome.environment, outcome.refusal
        )

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
