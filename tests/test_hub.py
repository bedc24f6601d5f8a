"""Tests of the change hub: long-poll waiters and event subscriptions, on a real event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from config_service.hub import ChangeEvent, ChangeHub, SubscriptionClosed


def test_current_is_none_until_published_then_follows_versions() -> None:
    hub: ChangeHub[bytes] = ChangeHub()
    assert hub.current("user-service", "staging") is None
    assert hub.publish("user-service", "staging", 1, b"v1") is True
    assert hub.current("user-service", "staging") == (1, b"v1")
    assert hub.current("user-service", "production") is None
    assert hub.document_count == 1


def test_an_older_version_is_ignored_and_the_same_version_only_refreshes_the_payload() -> None:
    hub: ChangeHub[bytes] = ChangeHub()
    hub.publish("api", "development", 5, b"five")
    assert hub.publish("api", "development", 4, b"four") is False
    assert hub.current("api", "development") == (5, b"five")
    assert hub.publish("api", "development", 5, b"five, rendered again") is False
    assert hub.current("api", "development") == (5, b"five, rendered again")


def test_wait_answers_at_once_when_the_known_version_is_stale() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()
        hub.publish("api", "staging", 3, b"three")
        result = await asyncio.wait_for(hub.wait_for_change("api", "staging", 2, timeout=30), 1)
        assert result == (3, b"three")
        # An unknown ETag from the future is stale too: the client learns the real version.
        result = await asyncio.wait_for(hub.wait_for_change("api", "staging", 9, timeout=30), 1)
        assert result == (3, b"three")
        assert hub.waiter_count == 0

    asyncio.run(scenario())


def test_wait_holds_until_a_publish_and_gets_the_published_payload_object() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()
        hub.publish("api", "staging", 3, b"three")
        waiting = asyncio.create_task(hub.wait_for_change("api", "staging", 3, timeout=30))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        assert hub.waiter_count == 1
        body = b'{"version": 4}'
        hub.publish("api", "staging", 4, body)
        version, payload = await asyncio.wait_for(waiting, 1)  # type: ignore[misc]
        assert version == 4
        assert payload is body
        assert hub.waiter_count == 0

    asyncio.run(scenario())


def test_wait_times_out_with_none_and_leaves_nothing_behind() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()
        hub.publish("api", "staging", 3, b"three")
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await hub.wait_for_change("api", "staging", 3, timeout=0.05) is None
        assert loop.time() - started >= 0.045
        assert hub.waiter_count == 0
        assert hub._documents[("api", "staging")].waiters == {}
        # A zero wait is a plain check.
        assert await hub.wait_for_change("api", "staging", 3, timeout=0) is None

    asyncio.run(scenario())


def test_waiting_on_a_missing_document_holds_until_its_first_version() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()
        waiting = asyncio.create_task(hub.wait_for_change("new-service", "production", 0, 30))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        assert hub.current("new-service", "production") is None
        hub.publish("new-service", "production", 1, b"first")
        assert await asyncio.wait_for(waiting, 1) == (1, b"first")

    asyncio.run(scenario())


def test_a_timed_out_wait_on_a_missing_document_leaves_no_slot() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()
        results = await asyncio.gather(
            *(hub.wait_for_change(f"ghost-{n}", "staging", 0, 0.02) for n in range(100))
        )
        assert results == [None] * 100
        assert hub._documents == {}
        assert hub.document_count == 0

    asyncio.run(scenario())


def test_a_cancelled_waiter_is_removed_without_leaking() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()
        hub.publish("api", "staging", 1, b"one")
        tasks = [
            asyncio.create_task(hub.wait_for_change("api", "staging", 1, timeout=60))
            for _ in range(50)
        ]
        ghost = asyncio.create_task(hub.wait_for_change("ghost", "staging", 0, timeout=60))
        await asyncio.sleep(0.01)
        assert hub.waiter_count == 51
        for task in [*tasks, ghost]:
            task.cancel()
        await asyncio.gather(*tasks, ghost, return_exceptions=True)
        assert all(task.cancelled() for task in tasks)
        assert hub.waiter_count == 0
        assert hub._documents[("api", "staging")].waiters == {}
        assert ("ghost", "staging") not in hub._documents
        # The timers went with them: nothing is left scheduled on the loop.
        assert not [
            handle
            for handle in asyncio.get_running_loop()._scheduled  # type: ignore[attr-defined]
            if not handle.cancelled()
        ]

    asyncio.run(scenario())


def test_a_publish_wakes_only_the_waiters_of_that_document() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()
        hub.publish("api", "staging", 1, b"staging")
        hub.publish("api", "production", 1, b"production")
        staging = asyncio.create_task(hub.wait_for_change("api", "staging", 1, 30))
        production = asyncio.create_task(hub.wait_for_change("api", "production", 1, 30))
        await asyncio.sleep(0.01)
        hub.publish("api", "staging", 2, b"staging 2")
        assert await asyncio.wait_for(staging, 1) == (2, b"staging 2")
        await asyncio.sleep(0.01)
        assert not production.done()
        assert hub.waiter_count == 1
        production.cancel()

    asyncio.run(scenario())


def test_ten_thousand_waiters_wake_on_one_publish_sharing_one_result() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()
        hub.publish("api", "production", 7, b"seven")
        tasks = [
            asyncio.create_task(hub.wait_for_change("api", "production", 7, 60))
            for _ in range(10_000)
        ]
        await asyncio.sleep(0.05)
        assert hub.waiter_count == 10_000
        body = b"x" * 100_000
        hub.publish("api", "production", 8, body)
        results = await asyncio.wait_for(asyncio.gather(*tasks), 10)
        first = results[0]
        assert first is not None and first[0] == 8 and first[1] is body
        # One tuple for all: nothing was copied or rendered per waiter.
        assert all(result is first for result in results)
        assert hub.waiter_count == 0
        assert hub._documents[("api", "production")].waiters == {}

    asyncio.run(scenario())


def test_publish_threadsafe_wakes_a_waiter_from_a_worker_thread() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()
        hub.publish("api", "staging", 1, b"one")
        loop = asyncio.get_running_loop()
        waiting = asyncio.create_task(hub.wait_for_change("api", "staging", 1, 30))
        subscription = hub.subscribe()
        await asyncio.sleep(0.01)

        def commit_in_a_thread() -> None:
            hub.publish_threadsafe(loop, "api", "staging", 2, b"two", sequence=11, hash="h2")

        thread = threading.Thread(target=commit_in_a_thread)
        thread.start()
        thread.join()
        assert await asyncio.wait_for(waiting, 1) == (2, b"two")
        event = await subscription.next(timeout=1)
        assert event == ChangeEvent(11, "api", "staging", 2, "h2")

    asyncio.run(scenario())


def test_subscribers_get_the_events_their_filter_accepts_in_order() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()
        everything = hub.subscribe()
        staging_only = hub.subscribe(lambda event: event.environment == "staging")
        assert hub.subscriber_count == 2
        hub.publish("api", "staging", 1, sequence=1, hash="a")
        hub.publish("api", "production", 1, sequence=2, hash="b")
        hub.publish("web", "staging", 4, sequence=3, hash="c")
        hub.publish("web", "staging", 4, b"same version again", sequence=4, hash="c")
        assert hub.last_sequence == 3
        seen = [await everything.next(timeout=1) for _ in range(3)]
        assert [event.sequence for event in seen if event] == [1, 2, 3]
        assert await everything.next(timeout=0.02) is None
        filtered = [await staging_only.next(timeout=1) for _ in range(2)]
        assert [(e.service, e.version) for e in filtered if e] == [("api", 1), ("web", 4)]
        assert staging_only.pending == 0

    asyncio.run(scenario())


def test_a_publish_with_a_sequence_needs_a_hash() -> None:
    hub: ChangeHub[bytes] = ChangeHub()
    with pytest.raises(ValueError):
        hub.publish("api", "staging", 1, sequence=1)


def test_a_slow_subscriber_is_dropped_instead_of_growing() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub(max_subscriber_queue=3)
        slow = hub.subscribe()
        fast = hub.subscribe()
        for sequence in range(1, 6):
            hub.publish("api", "staging", sequence, sequence=sequence, hash=str(sequence))
            event = await fast.next(timeout=1)
            assert event is not None and event.sequence == sequence
        assert slow.dropped and slow.closed
        assert hub.subscriber_count == 1
        assert hub.dropped_subscribers == 1
        # What was queued before the overflow is still readable, then it ends;
        # the client resumes from sequence 3 with Last-Event-ID.
        assert [(await slow.next()).sequence for _ in range(3)] == [1, 2, 3]  # type: ignore[union-attr]
        with pytest.raises(SubscriptionClosed) as closed:
            await slow.next(timeout=1)
        assert closed.value.reason == "overflow"

    asyncio.run(scenario())


def test_closing_a_subscription_ends_its_iteration_and_unregisters_it() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()
        received: list[int] = []

        async def stream() -> None:
            with hub.subscribe() as subscription:
                async for event in subscription:
                    received.append(event.version)
                    if event.version == 2:
                        subscription.close()

        task = asyncio.create_task(stream())
        await asyncio.sleep(0.01)
        assert hub.subscriber_count == 1
        hub.publish("api", "staging", 1, sequence=1, hash="a")
        hub.publish("api", "staging", 2, sequence=2, hash="b")
        await asyncio.wait_for(task, 1)
        assert received == [1, 2]
        assert hub.subscriber_count == 0

    asyncio.run(scenario())


def test_a_cancelled_stream_leaves_no_subscription() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()

        async def stream() -> None:
            with hub.subscribe() as subscription:
                while True:
                    await subscription.next(timeout=15)

        tasks = [asyncio.create_task(stream()) for _ in range(20)]
        await asyncio.sleep(0.01)
        assert hub.subscriber_count == 20
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert hub.subscriber_count == 0

    asyncio.run(scenario())


def test_parked_callbacks_wake_in_arrival_order_with_one_shared_tuple() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()
        hub.publish("api", "staging", 1, b"one")
        woken: list[tuple[int, object]] = []
        waiters = [
            hub.park("api", "staging", 30, lambda result, n=n: woken.append((n, result)))
            for n in range(5)
        ]
        gone = hub.park("api", "staging", 30, lambda result: woken.append((99, result)))
        assert hub.waiter_count == 6 and all(waiter.parked for waiter in waiters)
        gone.cancel()
        gone.cancel()  # a second cancel is nothing
        assert hub.waiter_count == 5 and not gone.parked
        body = b"two"
        hub.publish("api", "staging", 2, body)
        assert [n for n, _ in woken] == [0, 1, 2, 3, 4]
        shared = woken[0][1]
        assert shared == (2, body) and all(result is shared for _, result in woken)
        assert hub.waiter_count == 0 and not any(waiter.parked for waiter in waiters)
        waiters[0].cancel()  # after the wake: nothing happens
        assert hub.changed("api", "staging", 2) is None
        assert hub.changed("api", "staging", 1) == (2, body)

    asyncio.run(scenario())


def test_a_parked_callback_gets_none_when_its_time_is_up() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()
        results: list[object] = []
        hub.park("ghost", "staging", 0.02, results.append)
        assert hub.waiter_count == 1
        await asyncio.sleep(0.1)
        assert results == [None]
        assert hub.waiter_count == 0
        assert ("ghost", "staging") not in hub._documents  # no slot left for an unknown name

    asyncio.run(scenario())


def test_a_failing_callback_does_not_keep_the_others_from_their_wake_up() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()
        results: list[object] = []

        def broken(result: object) -> None:
            raise RuntimeError("this waiter is broken")

        hub.park("api", "staging", 30, results.append)
        hub.park("api", "staging", 30, broken)
        hub.park("api", "staging", 30, results.append)
        hub.publish("api", "staging", 1, b"one")
        assert results == [(1, b"one"), (1, b"one")]
        assert hub.waiter_count == 0

    asyncio.run(scenario())


def test_a_redirected_subscription_hands_over_queued_events_then_live_ones() -> None:
    hub: ChangeHub[bytes] = ChangeHub()
    subscription = hub.subscribe()
    hub.publish("api", "staging", 1, sequence=1, hash="a")
    hub.publish("api", "staging", 2, sequence=2, hash="b")
    taken: list[int] = []
    subscription.redirect(lambda event: taken.append(event.sequence) is None)
    assert taken == [1, 2] and subscription.pending == 0
    hub.publish("api", "staging", 3, sequence=3, hash="c")
    assert taken == [1, 2, 3] and subscription.pending == 0
    assert hub.publish("api", "staging", 3) is False  # no event for a known version
    assert taken == [1, 2, 3]


def test_a_redirected_subscription_that_cannot_take_an_event_is_dropped() -> None:
    hub: ChangeHub[bytes] = ChangeHub()
    refusing, failing, healthy = hub.subscribe(), hub.subscribe(), hub.subscribe()
    taken: list[int] = []
    refusing.redirect(lambda event: False)

    def fail(event: ChangeEvent) -> bool:
        raise RuntimeError("this stream is broken")

    failing.redirect(fail)
    healthy.redirect(lambda event: taken.append(event.sequence) is None)
    hub.publish("api", "staging", 1, sequence=1, hash="a")
    assert refusing.dropped and failing.dropped and not healthy.closed
    assert taken == [1]
    assert hub.subscriber_count == 1 and hub.dropped_subscribers == 2


def test_ending_an_owner_ends_only_its_waiters_and_subscriptions() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()
        hub.publish("api", "staging", 1, b"one")
        woken: list[tuple[str, object]] = []
        for owner in ("revoked", "kept", None):
            hub.park("api", "staging", 30, lambda result, owner=owner: woken.append((owner, result)), owner)
        waiting = asyncio.create_task(hub.wait_for_change("api", "staging", 1, 30, owner="revoked"))
        revoked_stream = hub.subscribe(owner="revoked")
        kept_stream = hub.subscribe(owner="kept")
        ended: list[str] = []
        redirected = hub.subscribe(owner="revoked")
        redirected.redirect(lambda event: True, lambda: ended.append("redirected"))
        await asyncio.sleep(0)
        assert hub.end_for(None) == 0  # unowned waits are nobody's to end
        assert hub.end_for("revoked") == 4
        assert woken == [("revoked", None)]
        assert await asyncio.wait_for(waiting, 1) is None
        assert revoked_stream.closed and redirected.closed and ended == ["redirected"]
        assert not kept_stream.closed and hub.waiter_count == 2 and hub.subscriber_count == 1
        with pytest.raises(SubscriptionClosed):
            await revoked_stream.next(timeout=1)
        hub.publish("api", "staging", 2, b"two")
        assert sorted(owner or "" for owner, _ in woken) == ["", "kept", "revoked"]

    asyncio.run(scenario())


def test_a_redirected_subscription_says_when_it_ends_however_it_ends() -> None:
    hub: ChangeHub[bytes] = ChangeHub()
    ended: list[str] = []
    dropped, closed, stopped = hub.subscribe(), hub.subscribe(), hub.subscribe()
    dropped.redirect(lambda event: False, lambda: ended.append("dropped"))
    closed.redirect(lambda event: True, lambda: ended.append("closed"))
    stopped.redirect(lambda event: True, lambda: ended.append("stopped"))
    hub.publish("api", "staging", 1, sequence=1, hash="a")
    closed.close()
    closed.close()  # once only
    hub.stop()
    assert ended == ["dropped", "closed", "stopped"]


# -- rollouts: two answers per document, waiters woken only when their answer moves ------------


def test_a_rollout_wakes_exactly_the_waiters_whose_answer_moves() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()
        hub.publish("api", "production", 1, b"stable")
        answers: dict[str, tuple[int, object] | None] = {}

        def park(name: str, known: int, bucket: int) -> None:
            hub.park(
                "api", "production", 30, lambda result: answers.setdefault(name, result),
                known=known, bucket=bucket,
            )

        park("low", 1, 5)  # will read the candidate at 10 %
        park("middle", 1, 30)  # at 50 %
        park("high", 1, 80)  # never, until completion
        park("anonymous", 1, -1)  # no cohort: always stable
        hub.set_rollout("api", "production", (10, 2, b"candidate"))
        assert answers == {"low": (2, b"candidate")}
        assert hub.changed("api", "production", 1, 5) == (2, b"candidate")
        assert hub.changed("api", "production", 2, 5) is None
        assert hub.changed("api", "production", 1, 80) is None
        park("low", 2, 5)  # it has the candidate now and waits again
        answers.clear()
        hub.set_rollout("api", "production", (50, 2, b"candidate"))
        assert answers == {"middle": (2, b"candidate")}
        answers.clear()
        # Rolled back: the cohort gets the stable version; the others wait on.
        hub.set_rollout("api", "production", None)
        assert answers == {"low": (1, b"stable")}
        assert hub.waiter_count == 2
        answers.clear()
        # A plain new version wakes the rest, each once.
        hub.publish("api", "production", 3, b"three")
        assert answers == {"high": (3, b"three"), "anonymous": (3, b"three")}
        assert hub.waiter_count == 0

    asyncio.run(scenario())


def test_completion_leaves_the_cohort_that_has_the_candidate_waiting() -> None:
    async def scenario() -> None:
        hub: ChangeHub[bytes] = ChangeHub()
        hub.publish("api", "production", 1, b"stable")
        hub.set_rollout("api", "production", (50, 2, b"candidate"))
        answers: dict[str, tuple[int, object] | None] = {}
        for name, known, bucket in (("cohort", 2, 10), ("rest", 1, 70)):
            hub.park(
                "api", "production", 30, lambda result, name=name: answers.setdefault(name, result),
                known=known, bucket=bucket,
            )
        # As the server completes a rollout: the candidate is published, then the rollout ends.
        hub.publish("api", "production", 2, b"current")
        hub.set_rollout("api", "production", None)
        assert answers == {"rest": (2, b"current")}
        assert hub.waiter_count == 1

    asyncio.run(scenario())


def test_rollout_events_carry_the_version_only_to_the_streams_they_move() -> None:
    import hashlib

    def bucket(cohort: str) -> int:
        digest = hashlib.sha256(f"api\0production\0{cohort}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % 100

    inside = next(f"i{n}" for n in range(1000) if bucket(f"i{n}") < 50)
    outside = next(f"o{n}" for n in range(1000) if bucket(f"o{n}") >= 50)
    event = ChangeEvent(7, "api", "production", 2, "h", rollout="{}", moved=(0, 50, False))
    assert event.moves(inside.encode()) and not event.moves(outside.encode())
    assert not event.moves(None)
    completion = ChangeEvent(8, "api", "production", 2, "h", rollout="{}", moved=(50, 100, True))
    assert completion.moves(None) and completion.moves(outside.encode())
    assert not completion.moves(inside.encode())
    assert not ChangeEvent(9, "api", "production", 2, "h", rollout="{}").moves(inside.encode())
