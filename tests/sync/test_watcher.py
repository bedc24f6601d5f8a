"""Tests of file sync: real files in a temporary folder, real watchfiles, a real event loop.

The server's side (validate and store) is a small in-memory stand-in that
parses with the real TSK module; FileSync only ever sees it through `push`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from config_service import tsk
from config_service.core.refusals import Refused
from config_service.sync.files import SyncFile
from config_service.sync.watcher import FileSync, PushResult, SyncReport

REPOSITORY = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ["development", "staging", "production"]

DEBOUNCE_MS = 100


@dataclass
class Stored:
    source: str
    author: str
    kind: str


@dataclass
class FakeServer:
    """Validates like the server (real TSK parse; `port` must be an integer) and keeps versions."""

    versions: dict[tuple[str, str], list[Stored]] = field(default_factory=dict)
    schemas: dict[str, list[Stored]] = field(default_factory=dict)
    reports: list[SyncReport] = field(default_factory=list)
    refuse_schemas: bool = False
    explode_on: str | None = None

    def push(
        self, service: str, environment: str, source: str, *, author: str, kind: str
    ) -> PushResult:
        if self.explode_on is not None and self.explode_on in source:
            raise RuntimeError("the store is on fire")
        data = tsk.loads(source)  # a TSKDecodeError is FileSync's to report
        if "port" in data and not isinstance(data["port"], int | tsk.EnvRef):
            return PushResult.rejected(
                "schema_violation",
                "the document does not match the schema",
                [{"path": "/port", "message": "must be an integer"}],
            )
        history = self.versions.setdefault((service, environment), [])
        if history and history[-1].source == source:
            return PushResult.unchanged(len(history))
        history.append(Stored(source, author, kind))
        return PushResult.created(len(history))

    def push_schema(self, name: str, source: str, *, author: str) -> PushResult:
        json.loads(source)
        if self.refuse_schemas:
            return PushResult.rejected(
                "schema_conflict",
                "the schema would break current documents",
                [{"path": "/port", "message": "staging@1: must be a string"}],
            )
        history = self.schemas.setdefault(name, [])
        history.append(Stored(source, author, "sync"))
        return PushResult.created(len(history))

    def sources(self, service: str, environment: str) -> list[str]:
        return [stored.source for stored in self.versions.get((service, environment), [])]


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    environments = tmp_path / "environments"
    schemas = tmp_path / "schemas"
    for environment in ENVIRONMENTS:
        (environments / environment).mkdir(parents=True)
    schemas.mkdir()
    return environments, schemas


def make_sync(folders: tuple[Path, Path], server: FakeServer, **options: object) -> FileSync:
    environments, schemas = folders
    return FileSync(
        environments,
        schemas,
        options.pop("environments", ENVIRONMENTS),  # type: ignore[arg-type]
        server.push,
        server.push_schema,
        report=server.reports.append,
        **{"debounce_ms": DEBOUNCE_MS, "watch_step_ms": 20, **options},  # type: ignore[arg-type]
    )


async def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(sync: FileSync) -> AsyncIterator[None]:
    task = asyncio.create_task(sync.run())
    await asyncio.wait_for(sync.wait_ready(), 5)
    try:
        yield
    finally:
        sync.stop()
        await asyncio.wait_for(task, 5)


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


# -- import at start -------------------------------------------------------------------------


def test_initial_import_pushes_the_repository_documents_and_schemas(
    folders: tuple[Path, Path],
) -> None:
    environments, schemas = folders
    for environment in ENVIRONMENTS:
        shutil.copy(
            REPOSITORY / "environments" / environment / "user-service.tsk",
            environments / environment / "user-service.tsk",
        )
    for schema in (REPOSITORY / "schemas").glob("*.json"):
        shutil.copy(schema, schemas / schema.name)
    order: list[str] = []
    server = FakeServer()
    original_push_schema = server.push_schema

    def push_schema(name: str, source: str, *, author: str) -> PushResult:
        order.append(f"schema:{name}")
        return original_push_schema(name, source, author=author)

    def push(service: str, environment: str, source: str, *, author: str, kind: str) -> PushResult:
        order.append(f"config:{environment}/{service}")
        return server.push(service, environment, source, author=author, kind=kind)

    sync = FileSync(environments, schemas, ENVIRONMENTS, push, push_schema)
    reports = asyncio.run(sync.initial_import())

    assert [report.action for report in reports] == ["applied"] * 8
    # Section schemas first (in the documented order), then service schemas, then documents.
    assert order == [
        "schema:database",
        "schema:cache",
        "schema:logging",
        "schema:security",
        "schema:user-service",
        "config:development/user-service",
        "config:production/user-service",
        "config:staging/user-service",
    ]
    stored = server.versions[("user-service", "staging")]
    assert stored == [
        Stored(
            (environments / "staging" / "user-service.tsk").read_text(),
            "file:staging/user-service.tsk",
            "sync",
        )
    ]
    assert server.schemas["database"][0].author == "file:schemas/database.json"


def test_a_restart_imports_only_files_changed_since_their_last_sync(
    folders: tuple[Path, Path],
) -> None:
    environments, _ = folders
    write(environments / "staging" / "api.tsk", "port: 1\n")
    write(environments / "staging" / "web.tsk", "port: 2\n")
    last_imported = {"file:staging/api.tsk": "port: 1\n", "file:staging/web.tsk": "port: 1\n"}
    asked: list[SyncFile] = []

    def last_synced(file: SyncFile) -> str | None:
        asked.append(file)
        return last_imported.get(file.author)

    server = FakeServer()
    sync = make_sync(folders, server, last_synced=last_synced)
    reports = asyncio.run(sync.initial_import())

    assert [(report.action, report.name) for report in reports] == [("applied", "web")]
    assert server.sources("api", "staging") == []
    assert server.sources("web", "staging") == ["port: 2\n"]
    assert {(file.kind, file.name, file.environment) for file in asked} == {
        ("config", "api", "staging"),
        ("config", "web", "staging"),
    }


def test_bad_files_are_reported_with_line_and_column_and_the_rest_imports(
    folders: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    environments, _ = folders
    write(environments / "staging" / "good.tsk", 'name: "good"\n')
    write(environments / "staging" / "broken.tsk", 'name: "x"\nlist: [1,\n')
    write(environments / "staging" / "latin1.tsk", b'name: "caf\xe9"\n')
    write(environments / "staging" / "wrong-type.tsk", 'port: "eighty"\n')
    write(environments / "staging" / "Bad Name.tsk", "port: 1\n")
    write(environments / "staging" / "api\n.tsk", "port: 1\n")
    write(environments / "staging" / "huge.tsk", "x: 1\n" * 4000)
    corpus = REPOSITORY / "tests" / "tsk" / "corpus"
    shutil.copy(corpus / "refused-ranges.tsk", environments / "staging" / "ranges.tsk")
    server = FakeServer()
    sync = make_sync(folders, server, max_bytes=10_000)
    caplog.set_level(logging.INFO, logger="config_service.sync")
    reports = {report.name: report for report in asyncio.run(sync.initial_import())}

    assert server.sources("good", "staging") == ['name: "good"\n']
    assert len(server.versions) == 1
    assert reports["good"].action == "applied"
    broken = reports["broken"]
    assert (broken.action, broken.error) == ("rejected", "invalid_tsk")
    assert broken.details[0]["line"] == 2 and broken.details[0]["column"] == 7
    assert reports["latin1"].error == "invalid_tsk"
    assert (reports["latin1"].details[0]["line"], reports["latin1"].details[0]["column"]) == (1, 11)
    assert reports["wrong-type"].error == "schema_violation"
    assert reports["wrong-type"].details == ({"path": "/port", "message": "must be an integer"},)
    assert reports["Bad Name"].error == "invalid_name"
    assert reports["api\n"].error == "invalid_name"
    assert reports["huge"].error == "too_large"
    ranges = reports["ranges"]
    assert (ranges.error, ranges.details[0]["line"], ranges.details[0]["column"]) == (
        "invalid_tsk",
        12,
        8,
    )
    assert all(report.author.startswith("file:staging/") for report in reports.values())
    log = caplog.text
    assert "staging/broken.tsk:2:7: unclosed array" in log
    assert "staging/latin1.tsk:1:11: invalid UTF-8" in log
    assert "staging/ranges.tsk:12:8: ranges are not supported" in log
    assert "staging/wrong-type.tsk: /port: must be an integer" in log
    assert "the current version stays" in log


def test_unknown_folders_sub_folders_and_other_files_are_ignored(
    folders: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    environments, schemas = folders
    write(environments / "qa" / "api.tsk", "port: 1\n")
    write(environments / "qa" / "web.tsk", "port: 1\n")
    write(environments / "staging" / "old" / "api.tsk", "port: 1\n")
    write(environments / "staging" / "README.md", "notes\n")
    write(environments / "staging" / ".api.tsk.swp", "port: 1\n")
    write(environments / "api.tsk", "port: 1\n")
    write(schemas / "notes.txt", "notes\n")
    server = FakeServer()
    caplog.set_level(logging.INFO, logger="config_service.sync")
    reports = asyncio.run(make_sync(folders, server).initial_import())

    assert server.versions == {} and server.schemas == {}
    assert [(report.action, report.author) for report in reports] == []
    assert [(report.action, report.author) for report in server.reports] == [
        ("ignored", "file:qa/")
    ]
    assert caplog.text.count("qa is not a configured environment") == 1


# -- watching --------------------------------------------------------------------------------


def test_a_changed_file_becomes_one_version_after_the_debounce(folders: tuple[Path, Path]) -> None:
    environments, _ = folders
    document = environments / "production" / "api.tsk"
    write(document, "port: 1\n")
    server = FakeServer()
    # The default window, so a busy machine's late timers cannot split the burst below.
    sync = make_sync(folders, server, debounce_ms=300)

    async def scenario() -> None:
        async with running(sync):
            assert server.sources("api", "production") == ["port: 1\n"]
            # Five writes 30 ms apart, each within the debounce window of the last.
            for port in range(2, 7):
                write(document, f"port: {port}\n")
                await asyncio.sleep(0.03)
            await wait_until(lambda: len(server.sources("api", "production")) == 2)
            await asyncio.sleep(0.6)
            assert server.sources("api", "production") == ["port: 1\n", "port: 6\n"]
            # Writes further apart than the window are versions of their own.
            write(document, "port: 7\n")
            await wait_until(lambda: len(server.sources("api", "production")) == 3)
            write(document, "port: 8\n")
            await wait_until(lambda: len(server.sources("api", "production")) == 4)
        stored = server.versions[("api", "production")][-1]
        assert (stored.author, stored.kind) == ("file:production/api.tsk", "sync")

    asyncio.run(scenario())


def test_an_editor_style_save_through_rename_is_imported(folders: tuple[Path, Path]) -> None:
    environments, _ = folders
    document = environments / "staging" / "api.tsk"
    write(document, "port: 1\n")
    server = FakeServer()
    sync = make_sync(folders, server)

    async def scenario() -> None:
        async with running(sync):
            temporary = environments / "staging" / ".api.tsk.tmp"
            write(temporary, "port: 2\n")
            os.replace(temporary, document)
            await wait_until(lambda: server.sources("api", "staging") == ["port: 1\n", "port: 2\n"])

    asyncio.run(scenario())


def test_a_broken_file_never_stops_the_watcher_and_its_fix_is_imported(
    folders: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    environments, _ = folders
    document = environments / "staging" / "api.tsk"
    write(document, "port: 1\n")
    server = FakeServer()
    sync = make_sync(folders, server)
    caplog.set_level(logging.INFO, logger="config_service.sync")

    async def scenario() -> None:
        async with running(sync):
            write(document, "port: 1\n[database\n")
            await wait_until(lambda: any(r.action == "rejected" for r in server.reports))
            rejected = [r for r in server.reports if r.action == "rejected"]
            assert rejected[0].error == "invalid_tsk" and rejected[0].details[0]["line"] == 2
            assert server.sources("api", "staging") == ["port: 1\n"]
            # Saving the same broken content again is refused again, not skipped.
            write(document, "port: 1\n[database\n")
            await wait_until(
                lambda: len([r for r in server.reports if r.action == "rejected"]) == 2
            )
            write(document, "port: 2\n")
            await wait_until(lambda: server.sources("api", "staging") == ["port: 1\n", "port: 2\n"])

    asyncio.run(scenario())
    assert "staging/api.tsk:2:" in caplog.text


def test_a_push_that_raises_is_reported_and_the_watcher_carries_on(
    folders: tuple[Path, Path],
) -> None:
    environments, _ = folders
    server = FakeServer(explode_on="boom")
    sync = make_sync(folders, server)

    async def scenario() -> None:
        async with running(sync):
            write(environments / "staging" / "api.tsk", 'note: "boom"\n')
            await wait_until(lambda: server.reports)
            assert (server.reports[0].action, server.reports[0].error) == (
                "rejected",
                "internal_error",
            )
            write(environments / "staging" / "api.tsk", "port: 3\n")
            await wait_until(lambda: server.sources("api", "staging") == ["port: 3\n"])

    asyncio.run(scenario())


def test_an_async_push_is_awaited(folders: tuple[Path, Path]) -> None:
    environments, _ = folders
    write(environments / "development" / "api.tsk", "port: 1\n")
    pushed: list[tuple[str, str, str, str, str]] = []

    async def push(
        service: str, environment: str, source: str, *, author: str, kind: str
    ) -> PushResult:
        await asyncio.sleep(0.01)
        pushed.append((service, environment, source, author, kind))
        return PushResult.created(len(pushed))

    sync = FileSync(folders[0], folders[1], ENVIRONMENTS, push, debounce_ms=DEBOUNCE_MS)

    async def scenario() -> None:
        async with running(sync):
            write(environments / "development" / "api.tsk", "port: 2\n")
            await wait_until(lambda: len(pushed) == 2)

    asyncio.run(scenario())
    assert pushed == [
        ("api", "development", "port: 1\n", "file:development/api.tsk", "sync"),
        ("api", "development", "port: 2\n", "file:development/api.tsk", "sync"),
    ]


def test_deleting_a_file_changes_nothing(
    folders: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    environments, _ = folders
    document = environments / "staging" / "api.tsk"
    write(document, "port: 1\n")
    server = FakeServer()
    sync = make_sync(folders, server)
    caplog.set_level(logging.INFO, logger="config_service.sync")

    async def scenario() -> None:
        async with running(sync):
            document.unlink()
            await wait_until(lambda: "was deleted" in caplog.text)
            await asyncio.sleep(3 * DEBOUNCE_MS / 1000)
            # Written back unchanged: that is what was last imported, so nothing to do.
            write(document, "port: 1\n")
            await asyncio.sleep(3 * DEBOUNCE_MS / 1000)

    asyncio.run(scenario())
    assert server.sources("api", "staging") == ["port: 1\n"]
    assert [report.action for report in server.reports] == ["applied"]


def test_an_environment_folder_created_after_start_is_scanned_at_once(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    environments, _ = folders
    server = FakeServer()
    sync = make_sync(folders, server, environments=[*ENVIRONMENTS, "qa", "canary"])

    async def scenario() -> None:
        async with running(sync):
            # Built elsewhere and moved in whole: the files raise no event of their own.
            outside = tmp_path / "outside" / "qa"
            for number in range(5):
                write(outside / f"service-{number}.tsk", f"port: {number}\n")
            os.rename(outside, environments / "qa")
            # Created in place and written at once.
            (environments / "canary").mkdir()
            for number in range(5):
                write(environments / "canary" / f"service-{number}.tsk", f"port: {number}\n")
            await wait_until(lambda: len(server.versions) == 10)

    asyncio.run(scenario())
    assert server.sources("service-3", "qa") == ["port: 3\n"]
    assert server.sources("service-4", "canary") == ["port: 4\n"]
    assert all(len(history) == 1 for history in server.versions.values())


def test_a_folder_created_after_start_that_is_no_environment_is_ignored(
    folders: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    environments, _ = folders
    server = FakeServer()
    sync = make_sync(folders, server)
    caplog.set_level(logging.INFO, logger="config_service.sync")

    async def scenario() -> None:
        async with running(sync):
            write(environments / "sandbox" / "api.tsk", "port: 1\n")
            write(environments / "sandbox" / "web.tsk", "port: 1\n")
            await wait_until(lambda: server.reports)
            write(environments / "staging" / "api.tsk", "port: 2\n")
            await wait_until(lambda: server.versions)

    asyncio.run(scenario())
    assert list(server.versions) == [("api", "staging")]
    assert [(r.action, r.author) for r in server.reports if r.action == "ignored"] == [
        ("ignored", "file:sandbox/")
    ]
    assert caplog.text.count("sandbox is not a configured environment") == 1


def test_schema_files_go_through_push_schema_and_a_refusal_is_reported(
    folders: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    _, schemas = folders
    server = FakeServer()
    sync = make_sync(folders, server)
    caplog.set_level(logging.INFO, logger="config_service.sync")
    schema = {"type": "object", "properties": {"port": {"type": "integer"}}}

    async def scenario() -> None:
        async with running(sync):
            write(schemas / "api.json", json.dumps(schema))
            await wait_until(lambda: "api" in server.schemas)
            server.refuse_schemas = True
            write(schemas / "api.json", json.dumps({**schema, "required": ["port"]}))
            await wait_until(lambda: any(r.action == "rejected" for r in server.reports))

    asyncio.run(scenario())
    assert [stored.author for stored in server.schemas["api"]] == ["file:schemas/api.json"]
    rejected = [r for r in server.reports if r.action == "rejected"]
    assert [(r.kind, r.name, r.error) for r in rejected] == [("schema", "api", "schema_conflict")]
    assert "schemas/api.json: /port: staging@1: must be a string" in caplog.text


def test_stop_ends_run_promptly_and_a_cancelled_run_cleans_up(folders: tuple[Path, Path]) -> None:
    server = FakeServer()

    async def scenario() -> None:
        sync = make_sync(folders, server)
        task = asyncio.create_task(sync.run())
        await asyncio.wait_for(sync.wait_ready(), 5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        sync.stop()
        await asyncio.wait_for(task, 2)
        assert loop.time() - started < 1

        again = make_sync(folders, server)
        task = asyncio.create_task(again.run())
        await asyncio.wait_for(again.wait_ready(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 2)

        # Stopped before it ran (a server shutting down at once): run() returns at once.
        early = make_sync(folders, server)
        early.stop()
        await asyncio.wait_for(early.run(), 1)

    asyncio.run(scenario())


def test_a_symlinked_folder_swap_like_a_configmap_update_is_imported(
    folders: tuple[Path, Path],
) -> None:
    environments, _ = folders
    staging = environments / "staging"
    write(staging / "..v1" / "api.tsk", "port: 1\n")
    os.symlink("..v1", staging / "..data")
    os.symlink("..data/api.tsk", staging / "api.tsk")
    server = FakeServer()
    sync = make_sync(folders, server)

    async def scenario() -> None:
        async with running(sync):
            assert server.sources("api", "staging") == ["port: 1\n"]
            # The update raises events only on the hidden entries, never on api.tsk itself.
            write(staging / "..v2" / "api.tsk", "port: 2\n")
            os.symlink("..v2", staging / "..data_tmp")
            os.replace(staging / "..data_tmp", staging / "..data")
            shutil.rmtree(staging / "..v1")
            await wait_until(lambda: server.sources("api", "staging") == ["port: 1\n", "port: 2\n"])

    asyncio.run(scenario())


def test_a_folder_rescan_does_not_report_a_refused_file_again(folders: tuple[Path, Path]) -> None:
    environments, _ = folders
    write(environments / "staging" / "broken.tsk", "list: [1,\n")
    write(environments / "staging" / "README.md", "notes\n")
    server = FakeServer()
    sync = make_sync(folders, server)

    async def scenario() -> None:
        async with running(sync):
            assert [r.action for r in server.reports] == ["rejected"]
            write(environments / "staging" / "README.md", "more notes\n")
            write(environments / "staging" / "api.tsk", "port: 1\n")
            await wait_until(lambda: server.versions)
            await asyncio.sleep(3 * DEBOUNCE_MS / 1000)

    asyncio.run(scenario())
    assert [(r.action, r.name) for r in server.reports] == [
        ("rejected", "broken"),
        ("applied", "api"),
    ]


def test_a_file_written_while_the_start_up_import_runs_is_not_missed(
    folders: tuple[Path, Path],
) -> None:
    environments, _ = folders
    write(environments / "staging" / "api.tsk", "port: 1\n")
    server = FakeServer()

    def push(service: str, environment: str, source: str, *, author: str, kind: str) -> PushResult:
        if service == "api":
            # Written after the import listed the folder: only the watcher can see it.
            write(environments / "staging" / "late.tsk", "port: 2\n")
        return server.push(service, environment, source, author=author, kind=kind)

    sync = FileSync(
        environments, None, ENVIRONMENTS, push, debounce_ms=DEBOUNCE_MS, watch_step_ms=20
    )

    async def scenario() -> None:
        async with running(sync):
            await wait_until(lambda: server.sources("late", "staging") == ["port: 2\n"])

    asyncio.run(scenario())


def test_when_the_os_watcher_fails_sync_goes_on_by_polling(
    folders: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The one stand-in here: the kernel refusing more watches cannot be caused on a
    # shared machine, so the native watcher is made to fail the way watchfiles does.
    import config_service.sync.watcher as sync_module

    real_awatch = sync_module.awatch
    modes: list[bool] = []

    def awatch(*paths: Path, force_polling: bool | None = None, **options: object) -> object:
        modes.append(bool(force_polling))
        if force_polling:
            return real_awatch(*paths, force_polling=True, poll_delay_ms=50, **options)  # type: ignore[arg-type]

        async def failing() -> AsyncIterator[set[tuple[object, str]]]:
            raise OSError("OS file watch limit reached")
            yield set()

        return failing()

    monkeypatch.setattr(sync_module, "awatch", awatch)
    environments, _ = folders
    write(environments / "staging" / "api.tsk", "port: 1\n")
    server = FakeServer()
    sync = make_sync(folders, server)
    caplog.set_level(logging.INFO, logger="config_service.sync")

    async def scenario() -> None:
        async with running(sync):
            write(environments / "staging" / "api.tsk", "port: 2\n")
            await wait_until(lambda: server.sources("api", "staging") == ["port: 1\n", "port: 2\n"])

    asyncio.run(scenario())
    assert modes == [False, True]
    assert "file watch limit reached" in caplog.text
    assert "watching by polling instead" in caplog.text


def test_a_conflict_is_logged_and_reported_and_the_files_next_content_is_pushed_again(
    folders: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    environments, _ = folders
    document = environments / "staging" / "api.tsk"
    write(document, "port: 1\n")
    server = FakeServer()
    pushed: list[str] = []
    held = {"port: 2\n"}  # the server holds this content back as a sync conflict

    def push(service: str, environment: str, source: str, *, author: str, kind: str) -> PushResult:
        pushed.append(source)
        if source in held:
            refusal = Refused(
                "sync_conflict",
                "api/staging moved on through the API (file_version 1, current_version 2)",
                [{"file": "staging/api.tsk", "file_version": 1, "current_version": 2}],
            )
            return PushResult.conflict(refusal, 2)
        return server.push(service, environment, source, author=author, kind=kind)

    environments_dir, schemas = folders
    sync = FileSync(
        environments_dir, schemas, ENVIRONMENTS, push, server.push_schema,
        report=server.reports.append, debounce_ms=DEBOUNCE_MS, watch_step_ms=20,
    )

    async def scenario() -> None:
        async with running(sync):
            write(document, "port: 2\n")
            await wait_until(lambda: pushed == ["port: 1\n", "port: 2\n"])
            # A rescan of the folder (something else moved in it) does not push the held content again.
            write(environments / "staging" / ".hidden", "x\n")
            await asyncio.sleep(3 * DEBOUNCE_MS / 1000)
            assert pushed == ["port: 1\n", "port: 2\n"]
            # The file put back as it was last imported is pushed: the server decides what it means.
            write(document, "port: 1\n")
            await wait_until(lambda: pushed == ["port: 1\n", "port: 2\n", "port: 1\n"])

    with caplog.at_level(logging.WARNING, logger="config_service.sync"):
        asyncio.run(scenario())
    conflict = next(report for report in server.reports if report.action == "conflict")
    assert (conflict.name, conflict.environment, conflict.version) == ("api", "staging", 2)
    assert conflict.error == "sync_conflict"
    assert conflict.details == ({"file": "staging/api.tsk", "file_version": 1, "current_version": 2},)
    assert "staging/api.tsk was not applied" in caplog.text
    assert "file_version 1, current_version 2" in caplog.text
    assert server.sources("api", "staging") == ["port: 1\n"]
