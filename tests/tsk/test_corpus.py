"""The project's own TSK corpus (tests/tsk/corpus): the service and style documents parse to known
data, the others fail at the right line with a message naming the construct. A folder named by
`TSK_CORPUS` adds its documents to the checks that need no expected data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config_service import tsk
from config_service.tsk import EnvRef

CORPUS = Path(__file__).resolve().parent / "corpus"
# Optional, never required: more documents to hold to the general rules below.
EXTRA = Path(os.environ["TSK_CORPUS"]) if os.environ.get("TSK_CORPUS") else None

RESERVE_STOCK = """\
def reserve_stock(sku, quantity, warehouse=None):
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    location = warehouse or nearest_warehouse(sku)
    held = {"sku": sku, "quantity": quantity, "at": location}
    ledger.append(held)
    return held
"""

CHOOSE_TEMPLATE = """\
def choose_template(kind, locale=None):
    locale = locale or @env("DEFAULT_LOCALE", "en")
    name = f"{kind}.{locale}.txt"
    if name not in templates:
        return f"{kind}.en.txt"
    return name
"""

EMIT = """\
def emit(action, actor, payload=None):
    record = {
        'action': action,
        'actor': actor,
        'payload': payload or {},
    }
    client.publish(subject, encode(record))
    return record
"""

REGISTER = '''\
def register(entry):
    for field in ("sku", "title", "price"):
        if field not in entry:
            raise KeyError(field)
    run("""
        INSERT INTO catalog (sku, title, price)
        VALUES (?, ?, ?)
    """, entry["sku"], entry["title"], entry["price"])
    return {"sku": entry["sku"], "status": "stored"}
'''

EXPECTED = {
    "service-orders-production.tsk": {
        "name": "orders-service",
        "version": "2.4.1",
        "port": EnvRef("PORT", 8010),
        "workers": EnvRef("WORKERS", 4),
        "debug": False,
        "database": {
            "url": EnvRef("ORDERS_DB_URL", "postgresql://orders-db.internal:5432/orders"),
            "pool_size": 25,
            "statement_timeout": 2.5,
            "replicas": ["orders-db-r1.internal", "orders-db-r2.internal"],
        },
        "queue": {
            "broker": EnvRef("BROKER_URL"),
            "prefetch": 50,
            "retries": 3,
            "dead_letter": {"enabled": True, "max.age": "7d"},
        },
        "logging": {
            "level": "WARNING",
            "format": "%(asctime)s [%(levelname)s] %(name)s: %(message)s",
            "handlers": {"console": {"stream": "stdout", "colour": False}, "orders.audit": "INFO"},
        },
        "limits": {"max_items_per_order": 1000, "max_order_value": 250000.0, "burst": -1},
        "routing": {
            "allowed_origins": ["https://shop.example.org", "https://backoffice.example.org"],
            "zone": "eu-central-1",
            "failover_zones": ["eu-central-1", "eu-west-3"],
        },
    },
    "service-inventory.tsk": {
        "inventory": {
            "name": "inventory-service",
            "release": "0.9.3",
            "port": 8020,
            "stage": EnvRef("SERVICE_STAGE", "development"),
            "upstreams": {
                "catalog": "http://catalog:8021",
                "pricing": "http://pricing:8022",
                "warehouse": "http://warehouse:8023",
            },
            "discovery": EnvRef("DISCOVERY_URL", "http://consul:8500"),
            "readiness": {"path": "/ready", "period": 15, "failures": 3},
            "reserve_stock_fujsen": RESERVE_STOCK,
        }
    },
    "service-notifications.tsk": {
        "notifications": {
            "sender": EnvRef("MAIL_SENDER", "noreply@example.net"),
            "smtp_port": EnvRef("SMTP_PORT", 587),
            "choose_template_fujsen": CHOOSE_TEMPLATE,
        }
    },
    "service-audit-stream.tsk": {
        "audit_stream": {
            "stream_url": EnvRef("AUDIT_STREAM", "nats://localhost:4222"),
            "subject": "audit.events",
            "emit_fujsen": EMIT,
        }
    },
    "service-catalog-registry.tsk": {
        "catalog_registry": {
            "store": EnvRef("CATALOG_STORE", "sqlite:///catalog.db"),
            "register_fujsen": REGISTER,
        }
    },
    "styles-adapters.tsk": {
        "storage": {
            "default": "filesystem",
            "filesystem": {"root": "./var/jobs", "fsync_interval": 0.25},
            "s3": {"bucket": "jobs-archive", "region": "eu-north-1", "prefix": "", "part_size": 8388608},
            "redis": {"url": "redis://localhost:6379/2", "key_prefix": "jobs:"},
        }
    },
    "styles-flat.tsk": {
        "job": "nightly-export",
        "schedule": "0 3 * * *",
        "dry_run": False,
        "source": {"host": "warehouse.internal", "port": 5433, "batch_size": 500},
        "target": {"bucket": "exports", "compress": True},
        "alerts": {"email": True, "pager": False},
        "concurrency": {"min_workers": 1, "max_workers": 8},
    },
    "styles-quoted-operators.tsk": {
        "app": {
            "title": "Reports Demo",
            "release": "3.1.0",
            "mode": "@env('REPORTS_MODE')",
            "verbose": True,
            "built": "@date('Y-m-d')",
        },
        "http": {
            "bind": "127.0.0.1",
            "port": 9090,
            "timeout": 45,
            "origins": ["http://localhost:5173", "https://reports.example.org"],
        },
        "flags": {"exports": "@feature('exports')", "charts": "@feature('charts')"},
        "formulas": {
            "total_fujsen": (
                "function total(rows) {\n"
                "    return rows.reduce((sum, row) => sum + row.amount, 0);\n}\n"
            ),
            "within_budget_fujsen": (
                "function withinBudget(amount) {\n    return amount >= 0 && amount <= 50000;\n}\n"
            ),
        },
    },
}

# file -> (line, column, words the message must hold)
REFUSED = {
    "refused-ranges.tsk": (12, 8, ["ranges are not supported", '"7000-7010"', "[7000, 7010]"]),
    "refused-expressions.tsk": (7, 16, ["expressions are not supported"]),
    "refused-operators.tsk": (1, 12, ["@query is not supported", "only @env"]),
    "refused-section-locals.tsk": (4, 9, ["bare word 'base'", "$base"]),
    "refused-angle-blocks.tsk": (4, 22, ["@file is not supported"]),
    "refused-cross-file.tsk": (3, 8, ["cross-file references are not supported", "@secrets.tsk.get"]),
}


def test_corpus_is_fully_covered() -> None:
    files = {path.name for path in CORPUS.glob("*.tsk")}
    assert files == set(EXPECTED) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_document_parses_to_its_data(name: str) -> None:
    data = tsk.TSK.from_file(CORPUS / name).to_dict()
    assert data == EXPECTED[name]
    # dict equality ignores order; the document's order is kept too
    assert list(data) == list(EXPECTED[name])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_document_survives_a_round_trip(name: str) -> None:
    data = tsk.loads((CORPUS / name).read_text())
    assert tsk.loads(tsk.dumps(data)) == data
    assert tsk.document_hash(tsk.loads(tsk.dumps(data))) == tsk.document_hash(data)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_document_outside_the_grammar_is_refused(name: str) -> None:
    line, column, words = REFUSED[name]
    with pytest.raises(tsk.TSKDecodeError) as caught:
        tsk.TSK.from_file(CORPUS / name)
    error = caught.value
    assert (error.lineno, error.colno) == (line, column)
    for word in words:
        assert word in error.msg
    assert str(error).startswith(f"line {line}, column {column}: ")


def every_document() -> list[Path]:
    own = sorted(CORPUS.glob("*.tsk"))
    return own + (sorted(EXTRA.glob("*.tsk")) if EXTRA is not None else [])


@pytest.mark.parametrize("path", every_document(), ids=lambda path: f"{path.parent.name}/{path.name}")
def test_every_document_parses_and_round_trips_or_fails_at_a_position(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    try:
        data = tsk.loads(text)
    except tsk.TSKDecodeError as error:
        lines = text.removeprefix("\ufeff").replace("\r\n", "\n").split("\n")
        assert 1 <= error.lineno <= len(lines)
        assert 1 <= error.colno <= len(lines[error.lineno - 1]) + 1
        assert str(error).startswith(f"line {error.lineno}, column {error.colno}: ")
        return
    assert tsk.loads(tsk.dumps(data)) == data
    try:
        formatted = tsk.reformat(text)
    except tsk.CannotFormat as refused:
        assert refused.reason.startswith("a comment inside a value (line ")
        return
    assert tsk.loads(formatted) == data
    assert tsk.reformat(formatted) == formatted


# Every construct upstream TuskLang documents use outside the grammar, each on a line of its
# own: each fails where it stands and names itself.
UPSTREAM_CONSTRUCTS = [
    ("port_range: 8000-9000", 13, "ranges are not supported"),
    ("current_year: @date('Y')", 15, "@date is not supported"),
    ('max_connections: @optimize("db_connections", 20)', 18, "@optimize is not supported"),
    ("url: base_url  # References section-local variable", 6, "bare word 'base_url'"),
    ('ttl: @cache("1h", @query("SELECT cache_ttl FROM config"))', 6, "@cache is not supported"),
    ("api_key: @api.tsk.get('secret_key')", 10, "cross-file references are not supported"),
    ('health_endpoint: base_path + "/health"', 18, "bare word 'base_path'"),
    ('full_url: $app_name + " API at " + base_path', 21, "expressions are not supported"),
    ('workers: $environment == "production" ? 4 : 1', 23, "expressions are not supported"),
    ('welcome: "Welcome to " + $app_name', 24, "expressions are not supported"),
    ('active_users: @query("Users").where("active", true).count()', 15, "@query is not supported"),
    ('feature_flag: @feature("new_dashboard")', 15, "@feature is not supported"),
    ("environment: production", 14, "quote the string"),
]


@pytest.mark.parametrize(("line", "column", "words"), UPSTREAM_CONSTRUCTS)
def test_each_upstream_construct_names_itself(line: str, column: int, words: str) -> None:
    prelude = '$app_name: "x"\n$environment: "dev"\n'
    with pytest.raises(tsk.TSKDecodeError) as caught:
        tsk.loads(prelude + line + "\n")
    assert (caught.value.lineno, caught.value.colno) == (3, column)
    assert words in caught.value.msg
