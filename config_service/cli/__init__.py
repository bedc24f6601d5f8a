"""The `tskcfg` command line: one click group, one module per area of commands.

Each command module adds its commands to `main` when imported; the imports
below are the whole list, so `tskcfg --help` shows every command.
"""

from __future__ import annotations

from config_service.cli import (  # noqa: F401  (registers commands)
    configs,
    lifecycle,
    local,
    migrate,
    rollout,
    schema,
    serve,  # noqa: F401
    token,
)
from config_service.cli._group import main

__all__ = ["main"]
