"""Rollouts: a candidate version reaches a growing share of a document's instances, step by step,
and goes back on its own when more of them fail to apply it than allowed (docs/rollouts.md).

State lives in the store (the rollout row, the instances that failed it), so a restart picks
a rollout up where it was: `load` shows the active ones to reads again, and the bake clock
goes on from the stored times. Every change is one write: a compare-and-set on the rollout
row (its sequence) timed by the store's clock, audited in the same transaction; once it is
durable, reads answer through the new `RolloutView` and the listeners (the HTTP edge's hub)
hear of it. `RolloutTimer` is the one thread that advances steps when their bake is over.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from config_service import cohorts
from config_service.core.access import Principal
from config_service.core.documents import Documents
from config_service.core.refusals import Refused, bad_request, not_found, rollout_in_progress
from config_service.core.rendered import (
    Rendered,
    RenderedVersions,
    RolloutView,
    render,
    rollout_view,
)
from config_service.store import (
    AuditEntry,
    InstanceReport,
    NewRollout,
    RolloutRecord,
    Store,
    Transaction,
    utc_now,
)

logger = logging.getLogger("config_service")

DEFAULT_STEPS = (10, 50, 100)
DEFAULT_BAKE_SECONDS = 300.0
MAX_STEPS = 20
MAX_BAKE_SECONDS = 7 * 24 * 3600.0
MAX_FAILED = 100_000
# The timer looks at least this often, so a rollout another process changed is not missed long.
TIMER_SECONDS = 1.0


@dataclass(frozen=True)
class RolloutPlan:
    """What `POST .../rollouts` asks for, its types already checked by the edge.

    The candidate comes from exactly one of `source` (TSK text), `version` (a version of this
    document) or `from_environment` (a promotion, of its `version` or current one).
    """

    source: str | None = None
    version: int | None = None
    from_environment: str | None = None
    steps: tuple[int, ...] = DEFAULT_STEPS
    bake_seconds: float = DEFAULT_BAKE_SECONDS
    max_failed: int = 0
    message: str = ""


@dataclass(frozen=True)
class RolloutChange:
    """One committed change of a rollout, for the edge to announce.

    `public`: the rollout object. `moved`: which readers' answer it changes (buckets in
    [low, high), and readers without a cohort when the flag is set), and `moved_to` what they
    read now. `view`: how reads answer from now on (None: the rollout is over). `current`: on
    completion, the candidate, now current for everyone.
    """

    rollout: RolloutRecord
    public: dict[str, Any]
    view: RolloutView | None
    moved: tuple[int, int, bool] | None
    moved_to: Rendered | None
    current: Rendered | None


Listener = Callable[[RolloutChange], None]


def parse_time(text: str) -> datetime:
    """A time as the store writes it (`2026-01-02T03:04:05.678Z`)."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def bake_elapsed(rollout: RolloutRecord, now: str) -> float:
    """Seconds the current step has baked at `now`; a pause freezes the clock."""
    return baked_at(rollout.state, rollout.baked_seconds, rollout.step_started_at, now)


def baked_at(state: str, baked_seconds: float, step_started_at: str | None, now: str) -> float:
    """Seconds a step has baked at `now`: what it baked before `step_started_at`, plus the
    time since while it runs (the fields of a rollout object, docs/rollouts.md)."""
    elapsed = baked_seconds
    if state == "running" and step_started_at is not None:
        elapsed += max(0.0, (parse_time(now) - parse_time(step_started_at)).total_seconds())
    return elapsed


def check_plan(
    steps: Any, bake_seconds: Any, max_failed: Any
) -> tuple[tuple[int, ...], float, int]:
    """The plan's numbers, checked: `bad_request` naming what is wrong."""
    if (
        not isinstance(steps, (list, tuple))
        or not steps
        or len(steps) > MAX_STEPS
        or not all(isinstance(step, int) and not isinstance(step, bool) for step in steps)
    ):
        raise bad_request(
            f"'steps' must be a list of 1 to {MAX_STEPS} whole percents, like [10, 50, 100]"
        )
    if any(not 1 <= step <= 100 for step in steps):
        raise bad_request(f"'steps' are percents from 1 to 100, not {list(steps)}")
    if any(later <= earlier for earlier, later in zip(steps, steps[1:], strict=False)):
        raise bad_request(f"'steps' must increase, not {list(steps)}")
    if steps[-1] != 100:
        raise bad_request(f"'steps' must end at 100 (everyone), not at {steps[-1]}")
    if (
        not isinstance(bake_seconds, (int, float))
        or isinstance(bake_seconds, bool)
        or not math.isfinite(bake_seconds)
        or not 0 <= bake_seconds <= MAX_BAKE_SECONDS
    ):
        raise bad_request(
            f"'bake_seconds' must be a number of seconds from 0 to {MAX_BAKE_SECONDS:g} "
            "(fractions allowed)"
        )
    if (
        not isinstance(max_failed, int)
        or isinstance(max_failed, bool)
        or not 0 <= max_failed <= MAX_FAILED
    ):
        raise bad_request(f"'max_failed' must be a whole number from 0 to {MAX_FAILED}")
    return tuple(steps), float(bake_seconds), max_failed


def _no_rollout(service: str, environment: str) -> Refused:
    return Refused("conflict", f"{service!r} in {environment!r} has no running or paused rollout")


class Rollouts:
    """The rollouts of one server: starting them, reading them, changing them."""

    def __init__(self, store: Store, versions: RenderedVersions, documents: Documents) -> None:
        self._store = store
        self._versions = versions
        self._documents = documents
        self._active: dict[tuple[str, str], RolloutRecord] = {}
        self._listeners: list[Listener] = []
        self._changed_event = threading.Event()
        # The sequence of each rollout's last change this process took in (its own, or one
        # another process sharing the store made), so each is applied and announced once.
        self._applied: dict[int, int] = {}
        self._changing = threading.Lock()

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(change)` after each committed change, in commit order, on the
        writer's thread (hand the work to the event loop, as the HTTP edge does)."""
        self._listeners.append(listener)

    def load(self) -> None:
        """Show every active rollout to reads (at start; the bake clocks go on by themselves)."""
        for rollout in self._store.active_rollouts():
            self._applied[rollout.id] = rollout.sequence
            self._show(rollout)

    def views(self) -> list[RolloutView]:
        """The active rollouts as reads see them."""
        found = [self._versions.rollout(*key) for key in list(self._active)]
        return [view for view in found if view is not None]

    # -- starting -----------------------------------------------------------------------

    def start(
        self,
        principal: Principal,
        service: str,
        environment: str,
        plan: RolloutPlan,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Validate the candidate like a push, store it as the next version (kind `rollout`,
        current for its cohort only) and start the rollout; the rollout object.

        Refuses bad_request (the plan), the push's refusals, not_found (the version or
        environment it names), conflict (no document, a retired one, or a candidate that is
        the current source) and rollout_in_progress.
        """
        steps, bake_seconds, max_failed = check_plan(plan.steps, plan.bake_seconds, plan.max_failed)
        chosen = [plan.source is not None, plan.from_environment is not None]
        if sum(chosen) > 1 or (plan.source is not None and plan.version is not None):
            raise bad_request("give the candidate as one of 'source', 'version' or 'from'")
        promoted_from: tuple[str, int] | None = None
        kept_local: tuple[str, ...] | None = None
        if plan.source is not None:
            source = plan.source
        elif plan.from_environment is not None:
            record = self._documents.promotion_source(
                service, environment, plan.from_environment, plan.version
            )
            # As a promotion: the target's environment-local values are kept.
            source, kept_local = self._documents.promoted_source(service, environment, record)
            promoted_from = (plan.from_environment, record.version)
        elif plan.version is not None:
            found = self._store.get_version(service, environment, plan.version)
            if found is None:
                raise not_found(f"{service!r} in {environment!r} has no version {plan.version}")
            if found.retired:
                raise Refused("conflict", f"version {plan.version} is a retire; it has no config")
            source = found.source
        else:
            raise bad_request("give the candidate: 'source' (TSK), 'version' (a number) or 'from'")
        push = self._documents.prepare_push(
            principal,
            service,
            environment,
            source,
            plan.message or f"rollout in steps {'/'.join(map(str, steps))} %",
            kind="rollout",
            action="rollout_start",
            request_id=request_id,
            promoted_from=promoted_from,
            kept_local=kept_local,
        )

        def operation(transaction: Transaction) -> RolloutRecord:
            stable = transaction.current_version(service, environment)
            if stable is None or stable.retired:
                state = "has no version" if stable is None else "is retired"
                raise Refused(
                    "conflict",
                    f"{service!r} in {environment!r} {state}; a rollout needs a current version "
                    "to start from (push one first)",
                )
            running = transaction.active_rollout(service, environment)
            if running is not None:
                raise rollout_in_progress(service, environment, running)
            if stable.source == source:
                raise Refused(
                    "conflict",
                    f"the candidate is the current version's source (version {stable.version}); "
                    "there is nothing to roll out",
                )
            candidate, _ = push(transaction)
            rollout = transaction.insert_rollout(
                NewRollout(
                    service,
                    environment,
                    candidate.version,
                    stable.version,
                    steps,
                    bake_seconds,
                    max_failed,
                    principal.name,
                ),
                None,  # audited with its candidate (rollout_start)
            )
            transaction.after_commit(lambda: self._changed(rollout, (0, rollout.percent, False)))
            return rollout

        return self.public(self._store.write(operation))

    # -- reading ------------------------------------------------------------------------

    def get(self, service: str, environment: str) -> dict[str, Any]:
        """The document's latest rollout (whatever its state); `not_found` when it never had one."""
        rollout = self.latest(service, environment)
        if rollout is None:
            raise not_found(f"{service!r} in {environment!r} has had no rollout")
        return rollout

    def latest(self, service: str, environment: str) -> dict[str, Any] | None:
        """The document's latest rollout object (whatever its state), or None."""
        rollout = self._store.latest_rollout(service, environment)
        return self.public(rollout) if rollout is not None else None

    def public(self, rollout: RolloutRecord) -> dict[str, Any]:
        """The rollout object of the API (docs/rollouts.md)."""
        candidate = self._versions.version(
            rollout.service, rollout.environment, rollout.candidate_version
        )
        stable = self._versions.version(
            rollout.service, rollout.environment, rollout.stable_version
        )
        return {
            "id": rollout.id,
            "service": rollout.service,
            "environment": rollout.environment,
            "state": rollout.state,
            "candidate": {
                "version": rollout.candidate_version,
                "hash": candidate.record.hash if candidate else None,
            },
            "stable": {
                "version": rollout.stable_version,
                "hash": stable.record.hash if stable else None,
            },
            "steps": list(rollout.steps),
            "step": rollout.step,
            "percent": rollout.percent,
            "bake_seconds": rollout.bake_seconds,
            "max_failed": rollout.max_failed,
            "started_at": rollout.started_at,
            "updated_at": rollout.updated_at,
            "step_started_at": rollout.step_started_at,
            "baked_seconds": rollout.baked_seconds,
            "counts": self.counts(rollout),
            "reason": rollout.reason,
            "author": rollout.author,
        }

    def counts(self, rollout: RolloutRecord) -> dict[str, int]:
        """Instances of the cohort: applied the candidate, failed it, or neither yet."""
        failed = set(self._store.rollout_failures(rollout.id))
        applied = pending = 0
        for instance in self._store.list_instances(rollout.service, rollout.environment):
            if instance.instance_id in failed:
                continue
            cohort = cohorts.cohort_of(
                instance.instance_id.encode("utf-8"),
                instance.cohort.encode("utf-8") if instance.cohort else None,
            )
            number = cohorts.bucket(rollout.service, rollout.environment, cohort)
            if not cohorts.reads_candidate(number, rollout.percent):
                continue
            if instance.status == "applied" and instance.version == rollout.candidate_version:
                applied += 1
            else:
                pending += 1
        return {"applied": applied, "failed": len(failed), "pending": pending}

    # -- changing -----------------------------------------------------------------------

    def pause(
        self, principal: Principal, service: str, environment: str, request_id: str | None = None
    ) -> dict[str, Any]:
        """Stop the bake clock where it is; the cohort keeps reading the candidate."""
        return self._act(principal, service, environment, "pause", request_id)

    def resume(
        self, principal: Principal, service: str, environment: str, request_id: str | None = None
    ) -> dict[str, Any]:
        """Start the bake clock again from where the pause stopped it."""
        return self._act(principal, service, environment, "resume", request_id)

    def abort(
        self, principal: Principal, service: str, environment: str, request_id: str | None = None
    ) -> dict[str, Any]:
        """End the rollout: every instance reads the stable version again."""
        return self._act(principal, service, environment, "abort", request_id)

    def complete(
        self, principal: Principal, service: str, environment: str, request_id: str | None = None
    ) -> dict[str, Any]:
        """End the rollout now with the candidate current for everyone."""
        return self._act(principal, service, environment, "complete", request_id)

    def _act(
        self,
        principal: Principal,
        service: str,
        environment: str,
        action: str,
        request_id: str | None,
    ) -> dict[str, Any]:
        def operation(transaction: Transaction) -> RolloutRecord:
            rollout = transaction.active_rollout(service, environment)
            if rollout is None:
                raise _no_rollout(service, environment)
            now = transaction.now()
            audit = (principal.name, principal.token_id, request_id)
            if action == "pause":
                if rollout.state == "paused":
                    raise Refused("conflict", f"rollout {rollout.id} is paused already")
                changed = dataclasses.replace(
                    rollout,
                    state="paused",
                    baked_seconds=bake_elapsed(rollout, now),
                    step_started_at=None,
                )
                return self._transition(transaction, rollout, changed, "rollout_pause", audit)
            if action == "resume":
                if rollout.state == "running":
                    raise Refused("conflict", f"rollout {rollout.id} is running already")
                changed = dataclasses.replace(rollout, state="running", step_started_at=now)
                return self._transition(transaction, rollout, changed, "rollout_resume", audit)
            if action == "abort":
                return self._end(
                    transaction,
                    rollout,
                    "aborted",
                    f"aborted by {principal.name}",
                    "rollout_abort",
                    audit,
                )
            return self._finish(transaction, rollout, f"completed by {principal.name}", audit)

        return self.public(self._store.write(operation))

    def _transition(
        self,
        transaction: Transaction,
        rollout: RolloutRecord,
        changed: RolloutRecord,
        action: str,
        audit: tuple[str, str | None, str | None],
        moved: tuple[int, int, bool] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> RolloutRecord:
        actor, token_id, request_id = audit
        entry = AuditEntry(
            actor=actor,
            action=action,
            token_id=token_id,
            service=rollout.service,
            environment=rollout.environment,
            request_id=request_id,
            detail={
                "rollout": rollout.id,
                "state": changed.state,
                "percent": changed.percent,
                **(detail or {}),
            },
        )
        updated = transaction.update_rollout(changed, rollout.sequence, entry)
        if updated is None:
            raise Refused("conflict", f"rollout {rollout.id} changed meanwhile; read it again")
        transaction.after_commit(lambda: self._changed(updated, moved))
        return updated

    def _end(
        self,
        transaction: Transaction,
        rollout: RolloutRecord,
        state: str,
        reason: str,
        action: str,
        audit: tuple[str, str | None, str | None],
    ) -> RolloutRecord:
        """Rolled back or aborted: the cohort reads the stable version again."""
        changed = dataclasses.replace(
            rollout,
            state=state,
            reason=reason,
            baked_seconds=bake_elapsed(rollout, transaction.now()),
            step_started_at=None,
        )
        return self._transition(
            transaction,
            rollout,
            changed,
            action,
            audit,
            (0, rollout.percent, False),
            {"reason": reason},
        )

    def _finish(
        self,
        transaction: Transaction,
        rollout: RolloutRecord,
        reason: str,
        audit: tuple[str, str | None, str | None],
    ) -> RolloutRecord:
        """Completed: the candidate becomes the current version for everyone."""
        transaction.set_current_version(
            rollout.service, rollout.environment, rollout.candidate_version
        )
        changed = dataclasses.replace(
            rollout,
            state="completed",
            step=len(rollout.steps) - 1,
            reason=reason,
            baked_seconds=bake_elapsed(rollout, transaction.now()),
            step_started_at=None,
        )
        return self._transition(
            transaction, rollout, changed, "rollout_complete", audit, (rollout.percent, 100, True)
        )

    # -- on their own: the bake timer and failure reports ---------------------------------

    def advance_due(self) -> float | None:
        """Advance every running rollout whose step has baked; seconds until the next is due
        (None: none is running). Called by `RolloutTimer`."""
        soonest: float | None = None
        # Planned by this process's clock; each change is decided by the store's.
        now = utc_now()
        for rollout in list(self._active.values()):
            if rollout.state != "running":
                continue
            remaining = rollout.bake_seconds - bake_elapsed(rollout, now)
            if remaining <= 0:
                try:
                    changed = self._store.write(
                        functools.partial(self._advance, key=(rollout.service, rollout.environment))
                    )
                except Refused:  # its compare-and-set lost to another process's change
                    changed = False
                except Exception:
                    logger.exception("rollout %d could not advance; it is tried again", rollout.id)
                    soonest = TIMER_SECONDS if soonest is None else min(soonest, TIMER_SECONDS)
                    continue
                if not changed:
                    # Another process changed it first (the store's row moved on, or its
                    # compare-and-set won): take what the store holds now.
                    self._catch_up(rollout)
                continue  # its next step's time is known after the change
            soonest = remaining if soonest is None else min(soonest, remaining)
        return soonest

    def _catch_up(self, known: RolloutRecord) -> None:
        latest = self._store.latest_rollout(known.service, known.environment)
        if latest is not None and latest.id == known.id and latest.sequence != known.sequence:
            self._changed(latest, None, heard=True)

    def _advance(self, transaction: Transaction, key: tuple[str, str]) -> bool:
        """Move the document's rollout on if its step has baked; False when it did nothing."""
        service, environment = key
        rollout = transaction.active_rollout(service, environment)
        if rollout is None or rollout.state != "running":
            return False
        now = transaction.now()
        if bake_elapsed(rollout, now) < rollout.bake_seconds:
            return False  # by the store's clock, not yet
        audit = ("rollout", None, None)
        if rollout.step + 1 >= len(rollout.steps):
            self._finish(transaction, rollout, "every step baked", audit)
            return True
        changed = dataclasses.replace(
            rollout, step=rollout.step + 1, step_started_at=now, baked_seconds=0.0
        )
        moved = (rollout.percent, changed.percent, False)
        self._transition(transaction, rollout, changed, "rollout_step", audit, moved)
        return True

    def check_report(self, transaction: Transaction, report: InstanceReport) -> None:
        """Inside the write of an instance report: a failure of the candidate by an instance
        of the cohort counts, and more than `max_failed` distinct ones roll back at once."""
        if report.status != "failed" or (report.service, report.environment) not in self._active:
            return
        rollout = transaction.active_rollout(report.service, report.environment)
        if rollout is None:
            return
        failed = report.failed_version if report.failed_version is not None else report.version
        if failed != rollout.candidate_version:
            return
        cohort = cohorts.cohort_of(
            report.instance_id.encode("utf-8"),
            report.cohort.encode("utf-8") if report.cohort else None,
        )
        number = cohorts.bucket(report.service, report.environment, cohort)
        if not cohorts.reads_candidate(number, rollout.percent):
            return  # not of the cohort: it never read the candidate from us
        count = transaction.record_rollout_failure(rollout.id, report.instance_id, report.error)
        if count > rollout.max_failed:
            error = (report.error or "").splitlines()[0][:200] if report.error else "no error given"
            reason = (
                f"{count} instance{'s' if count != 1 else ''} failed to apply version "
                f"{rollout.candidate_version} (max_failed {rollout.max_failed}); "
                f"last: {report.instance_id}: {error}"
            )
            self._end(
                transaction,
                rollout,
                "rolled_back",
                reason,
                "rollout_rolled_back",
                ("rollout", None, None),
            )

    # -- after a change is durable ------------------------------------------------------

    def _show(self, rollout: RolloutRecord) -> RolloutView | None:
        """Make reads answer as `rollout` says; its view (None once it is over)."""
        key = (rollout.service, rollout.environment)
        if not rollout.active:
            self._active.pop(key, None)
            self._versions.set_rollout(*key, None)
            return None
        stable = self._versions.current(*key)
        candidate = self._versions.version(*key, rollout.candidate_version)
        if stable is None or candidate is None:
            logger.error("rollout %d names a version the store lacks; reads ignore it", rollout.id)
            return None
        view = rollout_view(rollout, stable, candidate)
        self._versions.set_rollout(*key, view)
        self._active[key] = rollout
        return view

    def _apply(self, rollout: RolloutRecord) -> tuple[RolloutView | None, Rendered | None]:
        """Make reads answer as `rollout` says; its view, and on completion the candidate as
        the new current version."""
        current = None
        if rollout.state == "completed":
            record = self._store.get_version(
                rollout.service, rollout.environment, rollout.candidate_version
            )
            if record is not None:
                current = self._versions.remember(render(record))
        return self._show(rollout), current

    def heard(self, rollout: RolloutRecord) -> None:
        """Another process sharing the store changed `rollout` (read as the store holds it
        now): answer and announce as it says, once, as for a change of this process. Which
        cohorts moved is worked out from the state this process held before."""
        self._changed(rollout, None, heard=True)

    @staticmethod
    def _moved_since(known: RolloutRecord | None, rollout: RolloutRecord) -> tuple[int, int, bool] | None:
        """The buckets whose answer moved from `known` (what this process held of the same
        rollout, None when it held nothing of it) to `rollout`, as the changes here say."""
        before = known.percent if known is not None and known.active else 0
        if rollout.state == "completed":
            return (before, 100, True)
        if not rollout.active:
            return (0, before, False) if before else None
        if rollout.percent != before:
            return (before, rollout.percent, False)
        return None

    def _changed(
        self, rollout: RolloutRecord, moved: tuple[int, int, bool] | None, heard: bool = False
    ) -> None:
        with self._changing:
            if self._applied.get(rollout.id, -1) >= rollout.sequence:
                return  # taken in already (this process's change, heard back, or the reverse)
            self._applied[rollout.id] = rollout.sequence
            key = (rollout.service, rollout.environment)
            if heard:
                known = self._active.get(key)
                moved = self._moved_since(known if known is not None and known.id == rollout.id else None, rollout)
            self._announce(rollout, moved)

    def _announce(self, rollout: RolloutRecord, moved: tuple[int, int, bool] | None) -> None:
        key = (rollout.service, rollout.environment)
        view, current = self._apply(rollout)
        if view is not None:
            moved_to: Rendered | None = view.candidate
        elif current is not None:
            moved_to = current
        else:
            moved_to = self._versions.current(*key)
        change = RolloutChange(rollout, self.public(rollout), view, moved, moved_to, current)
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:  # a listener must never undo a durable change
                logger.exception("rollout listener failed")
        self._changed_event.set()

    def wake(self) -> None:
        """End the timer's current sleep."""
        self._changed_event.set()

    def wait_for_change(self, timeout: float) -> None:
        """Block until a rollout changes or `timeout` seconds pass (the timer's sleep)."""
        self._changed_event.wait(timeout)
        self._changed_event.clear()


class RolloutTimer:
    """The one thread of a server that advances rollouts whose step has baked."""

    def __init__(self, rollouts: Rollouts) -> None:
        self._rollouts = rollouts
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tskcfg-rollouts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._rollouts.wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                due = self._rollouts.advance_due()
            except Exception:
                logger.exception("the rollout timer failed; it goes on")
                due = TIMER_SECONDS
            wait = TIMER_SECONDS if due is None else min(max(due, 0.005), TIMER_SECONDS)
            self._rollouts.wait_for_change(wait)
