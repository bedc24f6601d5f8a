"""Rollout buckets: which of 100 buckets an instance falls in for one document (docs/rollouts.md).

The bucket of a cohort is the first 8 bytes of SHA-256(service, NUL, environment, NUL, cohort;
UTF-8) read as a big-endian unsigned integer, modulo 100. The cohort is what the instance sends
in `X-Config-Cohort`, else in `X-Instance-ID`; an instance with neither has no bucket and
always reads the stable version. The same cohort stays in the same bucket across restarts and
across rollouts, since nothing but these names goes into it.

Reads compute buckets on the hot path, so each is remembered in a bounded cache.
"""

from __future__ import annotations

import hashlib

# Buckets remembered at most; past that the cache starts afresh (a cohort costs one SHA-256).
MAX_CACHED = 65_536
# Longest cohort taken, in bytes; a longer header names no cohort (a bound for the cache).
MAX_COHORT = 200

NO_BUCKET = -1

_cache: dict[tuple[str, str, bytes], int] = {}


def bucket_of(service: str, environment: str, cohort: bytes) -> int:
    """The bucket (0-99) of `cohort` (UTF-8 bytes) for the document."""
    digest = hashlib.sha256(
        service.encode("utf-8") + b"\0" + environment.encode("utf-8") + b"\0" + cohort
    ).digest()
    return int.from_bytes(digest[:8], "big") % 100


def bucket(service: str, environment: str, cohort: bytes | None) -> int:
    """`bucket_of`, remembered; NO_BUCKET for no cohort (or one longer than MAX_COHORT)."""
    if not cohort or len(cohort) > MAX_COHORT:
        return NO_BUCKET
    key = (service, environment, cohort)
    found = _cache.get(key)
    if found is None:
        if len(_cache) >= MAX_CACHED:
            _cache.clear()
        found = _cache[key] = bucket_of(service, environment, cohort)
    return found


def cohort_of(instance_id: bytes | None, cohort: bytes | None) -> bytes | None:
    """The cohort an instance is bucketed by: `X-Config-Cohort` when sent, else `X-Instance-ID`."""
    return cohort if cohort else (instance_id or None)


def reads_candidate(bucket_number: int, percent: int) -> bool:
    """True when an instance in `bucket_number` reads the candidate at `percent`."""
    return 0 <= bucket_number < percent
