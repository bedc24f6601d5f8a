"""Durable storage: the `Store` interface, its records, and the SQLite store.

`interface` lists what a store does, `records` what it keeps, `sql_reads` the reads both SQL
stores share, `sqlite` the embedded store on one file (`sqlite_schema`: its tables and their
upgrades), `data_folder` the private folder that file lives in and the lock on it.
"""

from config_service.store.interface import ChangeSignal, CommitListener, Store, Transaction
from config_service.store.records import (
    ACTIVE_ROLLOUT_STATES,
    AUDIT_ACTIONS,
    MAX_INSTANCES_PER_DOCUMENT,
    ROLLOUT_STATES,
    AuditEntry,
    AuditRecord,
    DocumentState,
    IfMatch,
    InstanceRecord,
    InstanceReport,
    NewRollout,
    NewVersion,
    PreconditionFailed,
    RolloutRecord,
    SchemaRecord,
    ServiceRecord,
    SessionRecord,
    StoreNewerThanServer,
    StoreUnavailable,
    TokenRecord,
    TooManyInstances,
    VersionRecord,
    retirement,
    utc_now,
    utc_timestamp,
)
from config_service.store.sqlite import SqliteStore
from config_service.store.sqlite_schema import StoreTooNew

__all__ = [
    "ACTIVE_ROLLOUT_STATES",
    "AUDIT_ACTIONS",
    "MAX_INSTANCES_PER_DOCUMENT",
    "AuditEntry",
    "AuditRecord",
    "ChangeSignal",
    "CommitListener",
    "DocumentState",
    "IfMatch",
    "InstanceRecord",
    "InstanceReport",
    "NewRollout",
    "NewVersion",
    "PreconditionFailed",
    "ROLLOUT_STATES",
    "RolloutRecord",
    "SchemaRecord",
    "ServiceRecord",
    "SessionRecord",
    "SqliteStore",
    "Store",
    "StoreNewerThanServer",
    "StoreUnavailable",
    "StoreTooNew",
    "TokenRecord",
    "TooManyInstances",
    "Transaction",
    "VersionRecord",
    "retirement",
    "utc_now",
    "utc_timestamp",
]
