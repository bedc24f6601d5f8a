"""`Core`: the rules of one server process wired to its store, for any number of HTTP apps or none.

It holds one object per concept (access, tokens, rendered versions, schemas, services,
documents, rollouts, instances, audit); handlers, file sync and tests call them. It opens and closes the store,
and tells listeners of every commit and of every document or schema the rules refuse.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from config_service.core.access import Access
from config_service.core.audit import Audit
from config_service.core.console import Console
from config_service.core.documents import Documents
from config_service.core.instances import Instances
from config_service.core.rendered import Rendered, RenderedVersions, render
from config_service.core.rollouts import Rollouts, RolloutTimer
from config_service.core.schemas import Schemas
from config_service.core.services import Services
from config_service.core.sessions import Sessions
from config_service.core.tokens import Tokens
from config_service.settings import Settings
from config_service.store import SqliteStore, Store, VersionRecord

logger = logging.getLogger("config_service")

CommitListener = Callable[[Rendered], None]
RefusalListener = Callable[[str], None]


class Core:
    """Everything one server process knows and does about documents, schemas and tokens."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store: Store = store if store is not None else SqliteStore(settings.database_path)
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
        self.rollouts = Rollouts(self.store, self.versions, self.documents)
        self.rollout_timer: RolloutTimer | None = None
        self.instances = Instances(settings, self.store, self.versions, self.rollouts.check_report)
        self.audit = Audit(self.store)
        self.sessions = Sessions(self.store, self.tokens, settings.session_idle)
        self.console = Console(
            settings, self.access, self.versions, self.documents, self.instances, self.rollouts
        )
        self._commit_listeners: list[CommitListener] = []
        self._refusal_listeners: list[RefusalListener] = []
        self.store.add_commit_listener(self._committed)

    def start(self) -> None:
        """Open the store, load tokens, schemas and rollouts (whose timer starts), and make the
        first admin token if needed."""
        self.store.open()
        self.tokens.load()
        self.schemas.load()
        self.rollouts.load()
        self.tokens.ensure_admin_token()
        self.rollout_timer = RolloutTimer(self.rollouts)
        self.rollout_timer.start()

    def stop(self) -> None:
        if self.rollout_timer is not None:
            self.rollout_timer.stop()
            self.rollout_timer = None
        self.store.close()

    def check_store(self) -> None:
        """Raise when the store cannot be read (what `/health` reports)."""
        self.store.check()

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call `listener(rendered)` after each new version commits, in commit order.

        It runs on the store's writer thread, after the commit and before the writer is
        answered, so it must be quick (hand work to the event loop with
        `loop.call_soon_threadsafe`, as the change hub does).
        """
        self._commit_listeners.append(listener)

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

    def _refused(self, code: str) -> None:
        for listener in self._refusal_listeners:
            listener(code)
