"""`Core`: the rules of one server process wired to its store, for any number of HTTP apps or none.

It holds one object per concept (access, tokens, rendered versions, schemas, services,
documents, file sync's rules, rollouts, instances, audit); handlers, file sync and tests call
them. It opens and closes the store, and tells listeners of every commit, of every new version
(this process's or, when several processes share the store, another's: `add_change_listener`)
and of every document or schema the rules refuse.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from config_service.core.access import Access
from config_service.core.audit import Audit
from config_service.core.console import Console
from config_service.core.documents import Documents
from config_service.core.file_sync import FileSyncRules
from config_service.core.following import Follower
from config_service.core.instances import Instances
from config_service.core.rendered import Rendered, RenderedVersions, render
from config_service.core.replay import Replay
from config_service.core.rollouts import Rollouts, RolloutTimer
from config_service.core.schemas import Schemas
from config_service.core.services import Services
from config_service.core.sessions import Sessions
from config_service.core.tokens import Tokens
from config_service.settings import Settings
from config_service.store import SqliteStore, Store, StoreUnavailable, VersionRecord
from config_service.store.urls import parse_store_url

logger = logging.getLogger("config_service")

CommitListener = Callable[[Rendered], None]
# How long a process that shares the store waits for another to make the first admin token.
FIRST_TOKEN_WAIT = 30.0
# (a new version's record; it rendered, or None when this process holds a newer one already)
ChangeListener = Callable[[VersionRecord, Rendered | None], None]
RefusalListener = Callable[[str], None]


def _store_of(settings: Settings) -> Store:
    """The store `settings` name: `--store`'s URL, else SQLite in the data folder."""
    if settings.store is not None:
        return parse_store_url(settings.store).open_store()
    return SqliteStore(settings.database_path)


class Core:
    """Everything one server process knows and does about documents, schemas and tokens."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store: Store = store if store is not None else _store_of(settings)
        self.access = Access(settings.pipeline, settings.sections)
        self.tokens = Tokens(self.store, settings.admin_token_path)
        self.versions = RenderedVersions(self.store)
        self.schemas = Schemas(settings, self.store, self.access, self._refused)
        self.services = Services(
            self.store, self.access, settings.sections, settings.pipeline, settings.open_services
        )
        self.documents = Documents(
            settings, self.store, self.versions, self.schemas, self.services, self._refused
        )
        self.file_sync = FileSyncRules(settings, self.store, self.versions, self.documents)
        self.rollouts = Rollouts(self.store, self.versions, self.documents)
        self.rollout_timer: RolloutTimer | None = None
        self.replay = Replay(self.store, self.versions, self.rollouts)
        self.instances = Instances(settings, self.store, self.versions, self.rollouts.check_report)
        self.audit = Audit(self.store)
        self.sessions = Sessions(self.store, self.tokens, settings.session_idle)
        self.console = Console(
            settings, self.access, self.versions, self.documents, self.instances, self.rollouts,
            self.file_sync,
        )
        self._commit_listeners: list[CommitListener] = []
        self._change_listeners: list[ChangeListener] = []
        self._refusal_listeners: list[RefusalListener] = []
        # Other processes write to the same store (workers, or replicas on PostgreSQL): follow
        # its sequence, so their versions, tokens and schemas reach this process too.
        self.follower: Follower | None = None
        if settings.workers > 1 or not isinstance(self.store, SqliteStore):
            self.follower = Follower(
                self.store,
                self.versions,
                self._changed,
                self._refresh_state,
                deliver_rollout=self.rollouts.heard,
            )
        self.store.add_commit_listener(self._committed)

    def start(self) -> None:
        """Open the store, load tokens, schemas and rollouts (whose timer starts), and make the
        first admin token if needed."""
        self.store.open()
        # Followed from before the state is loaded: nothing committed meanwhile is missed.
        since = self.store.last_sequence() if self.follower is not None else 0
        self.tokens.load()
        self.schemas.load()
        self.rollouts.load()
        # Of processes sharing the store, the one holding its lease makes the first admin
        # token, so two starting together make one.
        if self.leads():
            self.tokens.ensure_admin_token()
        else:
            self._wait_for_first_token()
        self.rollout_timer = RolloutTimer(self.rollouts)
        self.rollout_timer.start()
        if self.follower is not None:
            self.follower.start(since)

    def _wait_for_first_token(self, within: float = FIRST_TOKEN_WAIT) -> None:
        """Another process makes the first admin token: serve once it exists, so the token it
        writes out works here too."""
        deadline = time.monotonic() + within
        while len(self.tokens) == 0:
            if time.monotonic() > deadline:
                logger.warning("no token exists yet; serving anyway (the admin token will follow)")
                return
            time.sleep(0.05)
            self.tokens.load()

    def leads(self) -> bool:
        """True when this process runs the work that must happen once (file sync, the first
        admin token): it is alone on its store, or it holds the store's lease (`Store.lead`)."""
        return self.follower is None or self.store.lead()

    def stop(self) -> None:
        if self.rollout_timer is not None:
            self.rollout_timer.stop()
            self.rollout_timer = None
        if self.follower is not None:
            self.follower.stop()
        self.store.close()

    def check_store(self) -> str:
        """What `/health` reports of the store: "ok", or "unavailable" when it cannot be
        reached (PostgreSQL away) while this process still serves what it holds in memory.
        Raises when the store fails otherwise."""
        try:
            self.store.check()
        except StoreUnavailable:
            return "unavailable"
        return "ok"

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call `listener(rendered)` after each new version commits, in commit order.

        It runs on the store's writer thread, after the commit and before the writer is
        answered, so it must be quick (hand work to the event loop with
        `loop.call_soon_threadsafe`, as the change hub does).
        """
        self._commit_listeners.append(listener)

    def add_change_listener(self, listener: ChangeListener) -> None:
        """Call `listener(record, rendered)` once for every new version of any document, in the
        store's sequence order: this process's commits and, when other processes share the
        store, theirs (`rendered` is None for a version older than one this process already
        holds: only its event is left to announce). It runs on a store thread and must be
        quick (the change hub hands it to the event loop)."""
        self._change_listeners.append(listener)

    @property
    def lagging(self) -> bool:
        """True while this process may have missed versions other processes committed (it
        lost the store's notifications and has not caught up yet)."""
        return self.follower is not None and self.follower.lagging

    def catch_up(self) -> None:
        """Read what other processes committed that this one has not handed on yet (a request
        named something newer than this process has seen). Raises when the store is away."""
        if self.follower is not None:
            self.follower.catch_up()

    def read_through(self, service: str, environment: str) -> Rendered | None:
        """The document's current version read from the store, not memory (a request named a
        version newer than the one this process holds); the others catch up too."""
        record = self.store.current_version(service, environment)
        rendered = None if record is None else self.versions.remember(render(record))
        if self.follower is not None:
            self.follower.poke()
        return rendered

    def add_refusal_listener(self, listener: RefusalListener) -> None:
        """Call `listener(code)` for each document or schema the rules refuse as invalid
        (`invalid_tsk`, `schema_violation`, `invalid_schema`), on the refusing thread."""
        self._refusal_listeners.append(listener)

    def _committed(self, records: list[VersionRecord]) -> None:
        for record in records:
            if record.kind == "rollout":
                continue  # a candidate is not current: its rollout's listeners hear of it
            rendered = render(record)
            self.versions.remember(rendered)
            for listener in self._commit_listeners:
                try:
                    listener(rendered)
                except Exception:  # a listener must never undo an acknowledged write
                    logger.exception("commit listener failed")
            if self.follower is None:
                self._changed(record, rendered)
        if self.follower is not None:
            # Handed on by the follower, in sequence order with the other processes' versions.
            self.follower.committed(records)

    def _changed(self, record: VersionRecord, rendered: Rendered | None) -> None:
        for listener in self._change_listeners:
            try:
                listener(record, rendered)
            except Exception:
                logger.exception("change listener failed")

    def _refresh_state(self) -> None:
        """Take in tokens and schemas other processes changed."""
        self.tokens.reload()
        self.schemas.reload()

    def _refused(self, code: str) -> None:
        for listener in self._refusal_listeners:
            listener(code)
