"""Every document of the shared corpus: the seed and in-grammar files parse to known data,
the others fail at the right line with a message naming the construct."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config_service import tsk
from config_service.tsk import EnvRef

# shared/ lies beside the checkout, for developers and CI alike; TSK_CORPUS overrides.
CORPUS = Path(
    os.environ.get("TSK_CORPUS", Path(__file__).resolve().parents[3] / "shared" / "tsk-corpus")
)

LOAD_CONFIG = """\
def load_config(service_name, environment=None):
    if not environment:
        environment = @env("SERVICE_ENV", "development")
    try:
        response = requests.get(f"{config_store}/config/{service_name}/{environment}")
        if response.status_code == 200:
            return response.json()
    except:
        pass
    return load_local_config(service_name, environment)
"""

CIRCUIT_BREAKER = """\
class ServiceCircuitBreaker:
    def __init__(self, service_name, failure_threshold=5, recovery_timeout=60):
        self.service_name = service_name
        self.failure_threshold = failure_threshold
        self.recovery_timeout = recovery_timeout
        self.failure_count = 0
        self.last_failure_time = None
        self.state = 'CLOSED'
"""

PUBLISH_EVENT = """\
def publish_event(event_type, event_data, target_service=None):
    import redis
    r = redis.from_url(message_queue)
    event = {
        'id': generate_event_id(),
        'type': event_type,
        'data': event_data,
    }
    r.lpush(queue_name, json.dumps(event))
    return event
"""

REGISTER_SERVICE = '''\
def register_service(service_info):
    required_fields = ['name', 'version', 'url', 'health_endpoint']
    for field in required_fields:
        if field not in service_info:
            raise ValueError(f"Missing required field: {field}")
    service_id = f"{service_info['name']}-{service_info['version']}"
    execute("""
        INSERT OR REPLACE INTO services (service_id, name, version, url)
        VALUES (?, ?, ?, ?)
    """, service_id, service_info['name'], service_info['version'], service_info['url'])
    return {'service_id': service_id, 'status': 'registered'}
'''

EXPECTED = {
    "seed-configuration-management.tsk": {
        "configuration_management": {
            "config_store": EnvRef("CONFIG_STORE", "http://config-service:8005"),
            "load_config_fujsen": LOAD_CONFIG,
        }
    },
    "seed-microservice.tsk": {
        "microservice": {
            "name": "user-service",
            "version": "1.0.0",
            "port": 8001,
            "environment": EnvRef("SERVICE_ENV", "development"),
            "dependencies": {
                "auth_service": "http://auth-service:8002",
                "notification_service": "http://notification-service:8003",
                "database_service": "http://database-service:8004",
            },
            "service_registry": EnvRef("SERVICE_REGISTRY", "http://registry:8000"),
            "health_check": {"endpoint": "/health", "interval": 30, "timeout": 5},
            "circuit_breaker_fujsen": CIRCUIT_BREAKER,
        }
    },
    "seed-service-communication.tsk": {
        "service_communication": {
            "message_queue": EnvRef("MESSAGE_QUEUE", "redis://localhost:6379"),
            "queue_name": "service_events",
            "publish_event_fujsen": PUBLISH_EVENT,
        }
    },
    "seed-service-registry.tsk": {
        "service_registry": {
            "registry_db": EnvRef("REGISTRY_DB", "sqlite:///registry.db"),
            "register_service_fujsen": REGISTER_SERVICE,
        }
    },
    "seed-user-service-production.tsk": {
        "name": "user-service",
        "version": "1.0.0",
        "port": EnvRef("PORT", 8001),
        "database": {
            "url": EnvRef("DATABASE_URL", "postgresql://db.internal:5432/users"),
            "pool_size": 20,
            "timeout": 5.0,
        },
        "cache": {"backend": "memory", "ttl": 300, "max_size": 10000},
        "logging": {
            "level": "INFO",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "loggers": {"user_service.http": "WARNING", "sqlalchemy": "ERROR"},
        },
        "security": {
            "allowed_origins": ["https://app.example.com", "https://admin.example.com"],
            "token_ttl": 3600,
            "require_mtls": False,
            "region": "eu-west-1",
        },
        "features": {"signup_enabled": True, "rate_limit_per_minute": 600},
    },
    "upstream-csharp-demo.tsk": {
        "application": {
            "name": "TuskLang C# Demo",
            "version": "1.0.0",
            "environment": "@env('APP_ENV')",
            "debug": True,
            "timestamp": "@date('yyyy-MM-dd HH:mm:ss')",
        },
        "server": {
            "host": "localhost",
            "port": 8080,
            "timeout": 30,
            "cors_origins": ["http://localhost:3000", "https://app.example.com"],
        },
        "database": {
            "type": "sqlite",
            "connection": "@env('DB_CONNECTION')",
            "pool_size": 10,
            "migrations": True,
        },
        "features": {
            "redis": "@feature('redis')",
            "postgresql": "@feature('postgresql')",
            "azure": "@feature('azure')",
            "unity": "@feature('unity')",
        },
        "calculator": {
            "add_fujsen": "function add(a, b) {\n    return a + b;\n}\n",
            "multiply_fujsen": "function multiply(a, b) {\n    return a * b;\n}\n",
            "validate_fujsen": (
                "function validate(amount) {\n    return amount > 0 && amount <= 1000000;\n}\n"
            ),
        },
    },
    "upstream-peanut.tsk": {
        "database": {
            "default": "sqlite",
            "sqlite": {"database": "./test_peanut.db", "timeout": 10.0},
            "postgresql": {
                "host": "localhost",
                "port": 5432,
                "database": "tusklang_test",
                "user": "postgres",
                "password": "",
            },
            "mongodb": {"url": "mongodb://localhost:27017", "database": "tusklang_test"},
        }
    },
    "upstream-test-config.tsk": {
        "app_name": "TuskLang Python Test",
        "version": "2.0.0",
        "debug": True,
        "database": {"host": "localhost", "port": 5432, "max_connections": 100},
        "cache": {"driver": "redis", "ttl": 300},
        "features": {"auth": True, "api": True, "websocket": False},
        "scaling": {"auto_scale": True, "min_instances": 2, "max_instances": 10},
    },
}

# file -> (line, column, words the message must hold)
REFUSED = {
    "upstream-enhanced-demo.tsk": (21, 13, ["ranges are not supported", '"8000-9000"']),
    "upstream-enhanced.tsk": (14, 21, ["expressions are not supported"]),
    "upstream-ultimate-freedom.tsk": (1, 10, ["@query is not supported", "only @env"]),
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


# Every construct the upstream files use outside the grammar, each on its own, from
# the very lines of those files: each fails where it stands and names itself.
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
