"""The language package stands alone: importing it loads no third-party code."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import config_service
from config_service import tsk
tsk.loads('a: 1\\n')
third_party = sorted(
    name for name in sys.modules
    if name.split('.')[0] in {
        'starlette', 'uvicorn', 'httpx', 'jsonschema', 'sqlite_utils', 'watchfiles',
        'click', 'prometheus_client', 'anyio', 'referencing',
    }
)
print(','.join(third_party))
"""


def test_importing_the_language_loads_no_third_party_package() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_public_names() -> None:
    from config_service import tsk

    for name in (
        "loads",
        "load",
        "dumps",
        "TSKDecodeError",
        "TSKResolveError",
        "EnvRef",
        "MISSING",
        "to_wire",
        "from_wire",
        "canonical_json",
        "document_hash",
        "section_hashes",
        "resolve",
        "validation_view",
        "TSK",
    ):
        assert name in tsk.__all__
        assert getattr(tsk, name) is not None
