"""Rollout buckets: the formula of docs/rollouts.md, the cohort chosen from the two headers, and
the bounded cache."""

from __future__ import annotations

import hashlib

from config_service import cohorts


def formula(service: str, environment: str, cohort: str) -> int:
    """Computed here from the documented formula, not by the module under test."""
    digest = hashlib.sha256(service.encode() + b"\0" + environment.encode() + b"\0" + cohort.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def test_buckets_are_the_formula_for_every_cohort() -> None:
    for number in range(500):
        cohort = f"pod-{number}"
        assert cohorts.bucket("user-service", "production", cohort.encode()) == formula(
            "user-service", "production", cohort
        )
    # The document is part of it: the same cohort lands elsewhere for another one.
    spread = {cohorts.bucket(f"svc-{n}", "production", b"pod-1") for n in range(50)}
    assert len(spread) > 20


def test_every_bucket_is_reached_evenly_enough() -> None:
    counts = [0] * 100
    for number in range(10_000):
        counts[cohorts.bucket("api", "staging", b"host-%d" % number)] += 1
    assert min(counts) > 50 and max(counts) < 160


def test_the_cohort_header_wins_and_none_is_no_bucket() -> None:
    assert cohorts.cohort_of(b"web-1", b"canary") == b"canary"
    assert cohorts.cohort_of(b"web-1", None) == b"web-1"
    assert cohorts.cohort_of(None, None) is None
    assert cohorts.bucket("api", "staging", None) == cohorts.NO_BUCKET
    assert cohorts.bucket("api", "staging", b"") == cohorts.NO_BUCKET
    assert cohorts.bucket("api", "staging", b"x" * (cohorts.MAX_COHORT + 1)) == cohorts.NO_BUCKET
    assert not cohorts.reads_candidate(cohorts.NO_BUCKET, 100)
    assert cohorts.reads_candidate(0, 1) and not cohorts.reads_candidate(1, 1)


def test_the_cache_is_bounded() -> None:
    for number in range(cohorts.MAX_CACHED + 10):
        cohorts.bucket("api", "bounded", b"%d" % number)
    assert len(cohorts._cache) <= cohorts.MAX_CACHED
