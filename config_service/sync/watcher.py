"""File sync (GitOps): the watcher that turns `environments/<environment>/<service>.tsk` and
`schemas/<name>.json` into versions.

`FileSync` imports the files at start and then watches both folders with
watchfiles (which files count: `files.py`). It never touches the store: it is
handed two callables, `push` for documents and `push_schema` for schemas, which
validate and store exactly like the HTTP API and answer with a `PushResult`
(the server's are in `apply.py`). What happens, file by file:

* A changed `environments/<environment>/<service>.tsk` is pushed with
  `kind="sync"` and `author="file:<environment>/<service>.tsk"` (the path
  relative to the environments folder). Writes to one file within
  `debounce_ms` (300 ms) of each other become one push of the last content.
* A file is pushed only when its content differs from what was last imported
  from it. At start that is asked of the server through `last_synced`; while
  running, FileSync remembers it.
* The server decides whether the file may change the document (one source of
  truth per document, `config_service/core/file_sync.py`): when the document
  moved on through the API since the file was last synced, `push` answers
  `PushResult.conflict`; FileSync logs it (naming both versions) and reports it
  as "conflict", and pushes the file's next change again.
* A file that is not UTF-8, is too large, has a bad name, or that `push`
  refuses is logged with line and column where known and reported through
  `report` (for the audit log); the current version stays and the watcher
  carries on. Fixing the file pushes it.
* Deleting a file changes nothing: the document keeps its current version.
* A folder that is not a configured environment is logged once and ignored,
  and so are sub-folders of an environment folder and files of other types.
* An environment folder created after start is scanned at once, so files
  written into it before the watcher saw the folder are not missed.
* `schemas/<name>.json` goes to `push_schema` (the standard section schemas
  `database`, `cache`, `logging`, `security` first, then the rest by name),
  always before documents, and never with force: a schema that would break
  current documents is refused by the server, and that refusal is logged and
  reported like any other.

Use::

    sync = FileSync(environments_dir, schemas_dir, ["development", "staging", "production"],
                    push=push, push_schema=push_schema, last_synced=last_synced, report=report)
    task = asyncio.create_task(sync.run())      # imports, then watches
    await sync.wait_ready()
    ...
    sync.stop(); await task

`make_file_sync` in `apply.py` builds the server's, and the app's lifespan runs it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from watchfiles import Change, awatch

from config_service import tsk
from config_service.core.file_sync import file_too_large, read_document_file
from config_service.core.refusals import Refused
from config_service.names import is_valid_name
from config_service.sync.files import SyncFile, SyncFolders

__all__ = [
    "DEFAULT_DEBOUNCE_MS",
    "DEFAULT_MAX_BYTES",
    "FileSync",
    "LastSynced",
    "PushConfig",
    "PushResult",
    "PushSchema",
    "SyncReport",
]

DEFAULT_DEBOUNCE_MS = 300
DEFAULT_MAX_BYTES = 1024 * 1024

logger = logging.getLogger("config_service.sync")

T = TypeVar("T")


class _Refusal:
    """`error`, `message` and `details` of an outcome, read from the refusal it carries."""

    refusal: Refused | None

    @property
    def error(self) -> str | None:
        return self.refusal.code if self.refusal is not None else None

    @property
    def message(self) -> str:
        return self.refusal.message if self.refusal is not None else ""

    @property
    def details(self) -> tuple[Mapping[str, Any], ...]:
        return tuple(self.refusal.details) if self.refusal is not None else ()


@dataclass(frozen=True)
class PushResult(_Refusal):
    """What the server did with one pushed file.

    `status`: `"created"` (a new version, `version` set), `"unchanged"` (the
    source equals the current one; `version` is the current version),
    `"conflict"` (nothing stored: the document moved on through the API since the
    file was last synced; `version` is the current version, and `refusal` says
    so, code `sync_conflict`, details `{"file", "file_version", "current_version"}`),
    or `"rejected"` (nothing stored). A rejection carries the rules' `Refused` as it
    was raised: its code (`invalid_tsk`, `schema_violation`, `schema_conflict`,
    `invalid_schema`, `invalid_name`, `too_large`, ...), message and details (for
    TSK errors `{"line", "column", "message"}`, for schema errors `{"path", "message"}`).
    """

    status: Literal["created", "unchanged", "conflict", "rejected"]
    version: int | None = None
    refusal: Refused | None = None

    @classmethod
    def created(cls, version: int) -> PushResult:
        return cls("created", version=version)

    @classmethod
    def unchanged(cls, version: int | None = None) -> PushResult:
        return cls("unchanged", version=version)

    @classmethod
    def conflict(cls, refusal: Refused, version: int | None = None) -> PushResult:
        return cls("conflict", version=version, refusal=refusal)

    @classmethod
    def refused(cls, refusal: Refused) -> PushResult:
        return cls("rejected", refusal=refusal)

    @classmethod
    def rejected(
        cls, error: str, message: str, details: Iterable[Mapping[str, Any]] = ()
    ) -> PushResult:
        return cls.refused(Refused(error, message, details))


class PushConfig(Protocol):
    """Validate and store one document as a new version, like `PUT /v1/configs/...`.

    Called with `kind="sync"` and `author="file:<environment>/<service>.tsk"`.
    May be a plain function or a coroutine function; a plain one runs on the
    event loop thread, so it must be quick (one SQLite commit is), and a
    coroutine function can hand slow work to `asyncio.to_thread`. Pushes are
    made one at a time, never concurrently. It should return a `PushResult`;
    raising `tsk.TSKDecodeError` counts as an `invalid_tsk` rejection, and any
    other exception as an `internal_error` rejection (logged with its traceback).
    After a `created` result the server publishes the version to the change hub
    as for any write.
    """

    def __call__(
        self, service: str, environment: str, source: str, *, author: str, kind: str
    ) -> PushResult | Awaitable[PushResult]: ...


class PushSchema(Protocol):
    """Check and store one schema, like `PUT /v1/schemas/{name}` without force.

    `name` is the file name without `.json`: a service, or a section schema
    such as `database`. `source` is the JSON text; `author` is `"file:schemas/<name>.json"`.
    """

    def __call__(
        self, name: str, source: str, *, author: str
    ) -> PushResult | Awaitable[PushResult]: ...


class LastSynced(Protocol):
    """The source last imported from this file (the newest version or schema whose
    author is `file.author`), or None if it never was. Consulted at start only."""

    def __call__(self, file: SyncFile) -> str | None | Awaitable[str | None]: ...


@dataclass(frozen=True)
class SyncReport(_Refusal):
    """One outcome, for the audit log: `action` is "applied", "unchanged", "conflict",
    "rejected" or "ignored".

    `author` is the file as `file:<relative path>` (the audit actor); for an
    ignored folder it names the folder (`file:qa/`). A server whose `push`
    already audits the versions it stores (and its conflicts) records only
    "rejected" and "ignored" reports; "unchanged" ones need no entry. A
    rejection or a conflict carries the `refusal` of its `PushResult`, unchanged.
    """

    action: Literal["applied", "unchanged", "conflict", "rejected", "ignored"]
    author: str
    kind: Literal["config", "schema"] | None = None
    name: str | None = None
    environment: str | None = None
    version: int | None = None
    refusal: Refused | None = field(default=None)


Report = Callable[[SyncReport], None]


class FileSync:
    """Imports and watches the environments and schemas folders; see the module doc."""

    def __init__(
        self,
        environments_dir: str | Path,
        schemas_dir: str | Path | None,
        environments: Iterable[str],
        push: PushConfig,
        push_schema: PushSchema | None = None,
        *,
        last_synced: LastSynced | None = None,
        report: Report | None = None,
        log: logging.Logger | None = None,
        debounce_ms: int = DEFAULT_DEBOUNCE_MS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        watch_step_ms: int = 50,
        force_polling: bool | None = None,
    ) -> None:
        self.environments_dir = Path(environments_dir).absolute()
        self.schemas_dir = Path(schemas_dir).absolute() if schemas_dir is not None else None
        self.environments = tuple(environments)
        self._push = push
        self._push_schema = push_schema
        self._last_synced = last_synced
        self._report = report
        self._log = log or logger
        self._debounce = debounce_ms / 1000
        self._max_bytes = max_bytes
        self._watch_step_ms = watch_step_ms
        self._force_polling = force_polling
        # The content last imported from each file: a file is pushed only when it differs.
        self._imported: dict[Path, str] = {}
        # The content last refused from each file: a folder rescan does not report it again.
        self._rejected: dict[Path, str] = {}
        # Path -> (loop time at which its debounce window ends, whether the file had an
        # event of its own rather than only being part of a folder rescan).
        self._pending: dict[Path, tuple[float, bool]] = {}
        # asyncio.Event binds to a loop only when first waited on, so these can be made here.
        self._pending_changed = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._stopping = False
        self._ready = asyncio.Event()
        self._files = SyncFolders(
            self.environments_dir, self.schemas_dir, self.environments, self._log, self._folder_ignored
        )

    # -- public --------------------------------------------------------------

    async def initial_import(self) -> list[SyncReport]:
        """Import every schema, then every document, that changed since it was last synced.

        Returns the reports of this pass (also given to `report` one by one).
        """
        reports: list[SyncReport] = []
        for file in self._files.schema_files() + self._files.config_files():
            result = await self._import(file, at_start=True)
            if result is not None:
                reports.append(result)
        return reports

    async def run(self, *, import_first: bool = True) -> None:
        """Watch both folders until `stop()` (or cancellation); import everything first.

        The watcher starts before the import, so a file written during the
        import is seen by one or the other. If the operating system's file
        watcher fails (say, its limit of watches is reached), FileSync logs it
        and goes on by polling, after reading every file again. Pending
        debounced writes are not pushed after `stop()`; the next start imports
        them. A FileSync runs once: after `stop()`, `run()` returns at once.
        """
        if self._stopping:
            return
        folders = [
            folder
            for folder in (self.environments_dir, self.schemas_dir)
            if folder is not None and folder.is_dir()
        ]
        for folder in (self.environments_dir, self.schemas_dir):
            if folder is not None and not folder.is_dir():
                self._log.warning("file sync: %s is not a folder; it is not watched", folder)
        if not folders:
            if import_first:
                await self.initial_import()
            self._ready.set()
            await self._stop_event.wait()
            return
        flusher = asyncio.create_task(self._flush_pending())
        polling = self._force_polling
        try:
            while True:
                try:
                    await self._watch(folders, polling=polling, import_first=import_first)
                    break
                except _WatcherFailed as failure:
                    if polling or self._stopping:
                        raise failure.cause from None
                    self._log.error(
                        "file sync: the file watcher failed (%s); watching by polling instead",
                        failure.cause,
                    )
                    polling = True
                    # Read everything again: a change may have fallen between the two watchers.
                    import_first = True
            # Stopped: let a push in progress finish rather than cut it off.
            self._stopping = True
            self._pending_changed.set()
            await flusher
        finally:
            self._stopping = True
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)

    async def _watch(
        self, folders: list[Path], *, polling: bool | None, import_first: bool
    ) -> None:
        changes = awatch(
            *folders,
            stop_event=self._stop_event,
            step=self._watch_step_ms,
            # Our own per-file debounce groups writes; watchfiles only batches.
            debounce=max(self._watch_step_ms, int(self._debounce * 1000)),
            force_polling=polling,
        ).__aiter__()
        next_batch: asyncio.Future[set[tuple[Change, str]]] = asyncio.ensure_future(anext(changes))
        # One turn of the loop lets awatch create its watcher before the import reads the files.
        await asyncio.sleep(0)
        try:
            if import_first:
                await self.initial_import()
            self._log.info(
                "file sync: watching %s%s",
                ", ".join(str(folder) for folder in folders),
                " by polling" if polling else "",
            )
            self._ready.set()
            while True:
                try:
                    batch = await next_batch
                except StopAsyncIteration:
                    return
                except Exception as exc:
                    raise _WatcherFailed(exc) from exc
                for change, raw_path in sorted(batch, key=lambda item: item[1]):
                    self._on_change(change, Path(raw_path))
                next_batch = asyncio.ensure_future(anext(changes))
        finally:
            next_batch.cancel()
            await asyncio.gather(next_batch, return_exceptions=True)

    def stop(self) -> None:
        """Ask `run()` to return (call from the event loop thread); it does within a watch step."""
        self._stopping = True
        self._stop_event.set()
        self._pending_changed.set()

    async def wait_ready(self) -> None:
        """Return once `run()` has imported the files and is watching."""
        await self._ready.wait()

    @property
    def pending(self) -> int:
        """Files waiting for their debounce window to end."""
        return len(self._pending)

    def _folder_ignored(self, folder: Path) -> None:
        self._emit(
            SyncReport(
                "ignored",
                f"file:{folder.name}/",
                refusal=Refused("unknown_environment", f"{folder.name} is not a configured environment"),
            )
        )

    # -- watching ------------------------------------------------------------

    def _on_change(self, change: Change, path: Path) -> None:
        if change == Change.deleted:
            if path in self._imported or path in self._rejected:
                self._log.info(
                    "file sync: %s was deleted; its document keeps its current version", path
                )
            return
        if path.parent == self.environments_dir and path.is_dir():
            # A new (or renamed-in) environment folder: files written into it before
            # the watcher covered it raise no event of their own, so read it now.
            if self._files.environment_folder_known(path):
                for file in self._files.folder_files(path):
                    self._schedule(file.path, own_event=True)
            return
        if self._files.classify(path) is not None:
            self._schedule(path, own_event=True)
            return
        folder = self._files.environment_folder_of(path)
        if folder is not None:
            # Something else moved inside an environment folder: a hidden entry or a
            # sub-folder. Mounts that swap a symlinked folder (Kubernetes ConfigMaps,
            # git-sync) change documents this way without an event on the document's
            # own path, so read the folder's documents again; unchanged ones cost a read.
            for file in self._files.folder_files(folder):
                self._schedule(file.path, own_event=False)

    def _schedule(self, path: Path, *, own_event: bool) -> None:
        loop = asyncio.get_running_loop()
        _, had_own_event = self._pending.get(path, (0.0, False))
        self._pending[path] = (loop.time() + self._debounce, own_event or had_own_event)
        self._pending_changed.set()

    async def _flush_pending(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._pending_changed.clear()
            now = loop.time()
            due = [path for path, (deadline, _) in self._pending.items() if deadline <= now]
            if due:
                files = []
                for path in due:
                    _, own_event = self._pending.pop(path)
                    file = self._files.classify(path)
                    if file is not None:
                        files.append((file, own_event))
                # Schemas first: a document may rely on the schema that changed with it.
                files.sort(key=lambda item: (item[0].kind != "schema", str(item[0].path)))
                for file, own_event in files:
                    if self._stopping:
                        return
                    await self._import(file, at_start=False, retry_rejected=own_event)
                continue
            timeout = (
                min(deadline for deadline, _ in self._pending.values()) - now
                if self._pending
                else None
            )
            try:
                await asyncio.wait_for(self._pending_changed.wait(), timeout)
            except TimeoutError:
                pass

    # -- importing one file --------------------------------------------------

    async def _import(
        self, file: SyncFile, *, at_start: bool, retry_rejected: bool = True
    ) -> SyncReport | None:
        """Push one file if its content is new; the report, or None when there was nothing to do."""
        source_or_report = self._read(file)
        if isinstance(source_or_report, SyncReport) or source_or_report is None:
            return source_or_report
        source = source_or_report
        if self._imported.get(file.path) == source:
            return None
        if not retry_rejected and self._rejected.get(file.path) == source:
            return None
        if at_start and self._last_synced is not None:
            try:
                last = await _maybe_await(self._last_synced(file))
            except Exception:
                self._log.exception("file sync: could not ask when %s was last synced", file.author)
                last = None
            if last == source:
                self._imported[file.path] = source
                return None
        if file.kind == "schema" and self._push_schema is None:
            return None
        if not is_valid_name(file.name):
            result = PushResult.rejected(
                "invalid_name",
                f"{file.name!r} is not a valid {'service' if file.kind == 'config' else 'schema'} "
                "name (lower-case letters, digits, '.', '_' and '-', at most 63)",
            )
        elif file.kind == "config":
            result = await self._call(
                lambda: self._push(
                    file.name, file.environment or "", source, author=file.author, kind="sync"
                )
            )
        else:
            push_schema = self._push_schema
            assert push_schema is not None
            result = await self._call(lambda: push_schema(file.name, source, author=file.author))
        if result.status == "rejected":
            self._rejected[file.path] = source
            return self._reject(file, result)
        if result.status == "conflict":
            # Not imported: the file's next content (even the one last imported) is pushed again.
            self._imported.pop(file.path, None)
            self._rejected[file.path] = source
            return self._conflict(file, result)
        self._imported[file.path] = source
        self._rejected.pop(file.path, None)
        action: Literal["applied", "unchanged"] = (
            "applied" if result.status == "created" else "unchanged"
        )
        if action == "applied":
            self._log.info("file sync: %s is now version %s", file.author, result.version)
        report = SyncReport(
            action,
            file.author,
            file.kind,
            file.name,
            file.environment,
            version=result.version,
        )
        self._emit(report)
        return report

    def _read(self, file: SyncFile) -> str | SyncReport | None:
        """The file's text; a rejection report when it cannot be used; None when it is gone."""
        if file.kind == "config":
            try:
                return read_document_file(file.path, self._max_bytes)
            except Refused as refused:
                if refused.code == "not_found":
                    return None  # deleted before its debounce ended: deleting changes nothing
                return self._reject(file, PushResult.refused(refused))
        try:
            size = file.path.stat().st_size
            if size > self._max_bytes:
                return self._reject(file, PushResult.refused(file_too_large(size, self._max_bytes)))
            data = file.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return self._reject(
                file, PushResult.rejected("unreadable", f"cannot read the file: {exc.strerror}")
            )
        if len(data) > self._max_bytes:
            return self._reject(file, PushResult.refused(file_too_large(len(data), self._max_bytes)))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self._reject(
                file,
                PushResult.rejected("invalid_schema", f"not UTF-8: byte {exc.start} cannot be decoded"),
            )

    async def _call(self, push: Callable[[], PushResult | Awaitable[PushResult]]) -> PushResult:
        try:
            result = await _maybe_await(push())
        except tsk.TSKDecodeError as exc:
            return _from_decode_error(exc)
        except Exception as exc:
            self._log.exception("file sync: the push failed")
            return PushResult.rejected("internal_error", f"the push failed: {exc}")
        if not isinstance(result, PushResult):
            return PushResult.rejected(
                "internal_error", f"the push returned {type(result).__name__}, not a PushResult"
            )
        return result

    def _reject(self, file: SyncFile, result: PushResult) -> SyncReport:
        where = file.author.removeprefix("file:")
        lines = [f"{where}: {result.error}: {result.message}"]
        for detail in result.details:
            if "line" in detail:
                lines.append(
                    f"{where}:{detail['line']}:{detail.get('column', 1)}: {detail.get('message', '')}"
                )
            elif "path" in detail:
                lines.append(f"{where}: {detail['path'] or '/'}: {detail.get('message', '')}")
        self._log.error(
            "file sync: %s was not imported; the current version stays\n  %s",
            file.author,
            "\n  ".join(lines),
        )
        report = SyncReport(
            "rejected",
            file.author,
            file.kind,
            file.name,
            file.environment,
            refusal=result.refusal,
        )
        self._emit(report)
        return report

    def _conflict(self, file: SyncFile, result: PushResult) -> SyncReport:
        self._log.warning(
            "file sync: %s was not applied: %s", file.author.removeprefix("file:"), result.message
        )
        report = SyncReport(
            "conflict",
            file.author,
            file.kind,
            file.name,
            file.environment,
            version=result.version,
            refusal=result.refusal,
        )
        self._emit(report)
        return report

    def _emit(self, report: SyncReport) -> None:
        if self._report is None:
            return
        try:
            self._report(report)
        except Exception:
            self._log.exception("file sync: reporting %s failed", report.author)


class _WatcherFailed(Exception):
    """The file watcher itself failed (`cause` says why), as opposed to a file or a push."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


async def _maybe_await(value: T | Awaitable[T]) -> T:
    if inspect.isawaitable(value):
        return await value
    return value


def _from_decode_error(exc: tsk.TSKDecodeError) -> PushResult:
    return PushResult.rejected(
        "invalid_tsk",
        "the file is not valid TSK",
        [{"line": exc.lineno, "column": exc.colno, "message": exc.msg}],
    )
