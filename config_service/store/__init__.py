"""Durable storage: the `Store` interface, its records, and the SQLite store.

`interface` lists what a store does, `records` what it keeps, `sqlite` the embedded store on
one file, `data_folder` the private folder that file lives in and the lock on it.
"""

from config_service.store.interface import CommitListener, Store, Transaction
from config_service.store.records import (
    AUDIT_ACTIONS,
    MAX_INSTANCES_PER_DOCUMENT,
    AuditEntry,
    AuditRecord,
    IfMatch,
    InstanceRecord,
    InstanceReport,
    NewVersion,
    PreconditionFailed,
    SchemaRecord,
    StoreNewerThanServer,
    StoreUnavailable,
    TokenRecord,
    TooManyInstances,
    VersionRecord,
    utc_now,
    utc_timestamp,
)
from config_service.store.sqlite import SqliteStore

__all__ = [
    "AUDIT_ACTIONS",
    "MAX_INSTANCES_PER_DOCUMENT",
    "AuditEntry",
    "AuditRecord",
    "CommitListener",
    "IfMatch",
    "InstanceRecord",
    "InstanceReport",
    "NewVersion",
    "PreconditionFailed",
    "SchemaRecord",
    "SqliteStore",
    "Store",
    "StoreNewerThanServer",
    "StoreUnavailable",
    "TokenRecord",
    "TooManyInstances",
    "Transaction",
    "VersionRecord",
    "utc_now",
    "utc_timestamp",
]
