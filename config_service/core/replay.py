"""What an event stream resumed with `Last-Event-ID` replays: every stored event after an id,
versions and rollout changes interleaved in sequence order (docs/server.md, "Event stream").

A rollout takes a new sequence at each change and the store keeps only its latest state, so a
rollout that changed several times after the id is replayed once, as it is now, at the
sequence of its latest change (docs/rollouts.md). A rollout's candidate version is not
replayed as a version of its own: it goes with its rollout's event, to the streams whose
cohort reads it (as when the stream is live).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config_service.core.rendered import RenderedVersions
from config_service.core.rollouts import Rollouts
from config_service.store import RolloutRecord, Store, VersionRecord


@dataclass(frozen=True)
class ReplayedRollout:
    """A rollout as it is now, replayed at the sequence of its latest change.

    `public`: the rollout object. `moved`: the streams that get a version event with it
    (buckets in [low, high), and streams without a cohort when the flag is set), and
    `version`/`hash` that version: the candidate the cohort reads (everyone, once completed),
    or after an abort or rollback the stable version the cohort reads again.
    """

    rollout: RolloutRecord
    public: dict[str, Any]
    moved: tuple[int, int, bool] | None
    version: int
    hash: str

    @property
    def sequence(self) -> int:
        return self.rollout.sequence


Replayed = VersionRecord | ReplayedRollout


@dataclass(frozen=True)
class ReplayPage:
    """One page of replayed events, in sequence order, and the sequence it covers up to (the
    next page starts after `end`, whether or not an event took it)."""

    events: list[Replayed]
    end: int


class Replay:
    """Reads the events stored after a sequence, for a stream that resumes."""

    def __init__(self, store: Store, versions: RenderedVersions, rollouts: Rollouts) -> None:
        self._store = store
        self._versions = versions
        self._rollouts = rollouts

    def last_sequence(self) -> int:
        """The last sequence taken, by a version or a rollout change (0 when there is none)."""
        return self._store.last_sequence()

    def page(self, after: int, bound: int, limit: int) -> ReplayPage:
        """The events after `after` and up to `bound` (a sequence read before, so every event
        up to it is committed), at most about `limit` of each kind. Candidate versions are left
        out (their rollout's event carries them)."""
        if after >= bound:
            return ReplayPage([], max(after, bound))
        versions = self._store.versions_after(after, limit)
        end = bound
        if len(versions) == limit:
            end = min(end, versions[-1].sequence)
        rollouts: list[RolloutRecord] = []
        # Only when a sequence up to `end` went to something other than a version.
        if sum(1 for record in versions if record.sequence <= end) < end - after:
            rollouts = self._store.rollouts_after(after, limit)
            if len(rollouts) == limit:
                end = min(end, rollouts[-1].sequence)
        events: list[Replayed] = [
            record for record in versions if record.sequence <= end and record.kind != "rollout"
        ]
        events.extend(self._replayed(rollout) for rollout in rollouts if rollout.sequence <= end)
        events.sort(key=lambda event: event.sequence)
        return ReplayPage(events, end)

    def _replayed(self, rollout: RolloutRecord) -> ReplayedRollout:
        if rollout.active:
            moved: tuple[int, int, bool] | None = (0, rollout.percent, False)
            number = rollout.candidate_version
        elif rollout.state == "completed":
            moved = (0, 100, True)
            number = rollout.candidate_version
        else:  # aborted or rolled back: the cohort reads the stable version again
            moved = (0, rollout.percent, False)
            number = rollout.stable_version
        rendered = self._versions.version(rollout.service, rollout.environment, number)
        if rendered is None:
            moved, hash_ = None, ""
        else:
            hash_ = rendered.record.hash
        return ReplayedRollout(rollout, self._rollouts.public(rollout), moved, number, hash_)
