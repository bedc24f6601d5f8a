"""Helpers the client tests import (pytest puts this directory on sys.path)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "user-service"


def document_path(environments: Path, environment: str = "development") -> Path:
    return environments / environment / f"{SERVICE}.tsk"
