"""The retry policy: full-jitter backoff and the breaker."""

from __future__ import annotations

from tskcfg import RetryPolicy

# ---------------------------------------------------------------------------- retry


def test_backoff_is_full_jitter_doubling_up_to_the_cap() -> None:
    retry = RetryPolicy(base=0.5, cap=30.0, failure_threshold=100, random=lambda: 1.0)
    delays = [retry.failure() for _ in range(10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert RetryPolicy(random=lambda: 0.0, failure_threshold=100).failure() == 0.0


def test_breaker_opens_after_threshold_and_success_closes_it() -> None:
    retry = RetryPolicy(base=0.01, failure_threshold=3, recovery_timeout=20.0, random=lambda: 0.0)
    assert [retry.failure() for _ in range(2)] == [0.0, 0.0]
    assert retry.state == "closed"
    assert retry.failure() == 10.0  # open: at least half the recovery timeout, jittered
    assert retry.state == "open"
    assert retry.failure() == 10.0  # the half-open probe failed: open again
    retry.success()
    assert retry.state == "closed" and retry.failure() == 0.0
