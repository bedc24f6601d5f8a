"""Helpers for the client tests without a server: documents as received, a core, driving its flows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clienttest import ROOT, SERVICE

from config_service import tsk
from tskcfg._answers import Received
from tskcfg._core import ClientCore
from tskcfg._effects import Offload, Report, drive
from tskcfg._settings import Settings, make_settings

DOCUMENT = (ROOT / "environments" / "development" / f"{SERVICE}.tsk").read_text(encoding="utf-8")


def run_calls(flow: Any) -> None:
    """Drive a transaction whose only effects are applier and handler calls."""
    drive(flow, lambda call: call())


def run_apply(flow: Any) -> list[Report]:
    """Drive an apply flow: calls made, file work done, the reports it sends returned."""
    reports: list[Report] = []

    def perform(effect: Any) -> Any:
        if isinstance(effect, Report):
            reports.append(effect)
            return None
        if isinstance(effect, Offload):
            return effect.function()
        return effect()

    drive(flow, perform)
    return reports


def settings_for(tmp_path: Path, **kwargs: Any) -> Settings:
    return make_settings(
        SERVICE, "development", cache_dir=tmp_path / "cache", environments_dir=tmp_path, **kwargs
    )


def core_for(tmp_path: Path, **kwargs: Any) -> ClientCore:
    return ClientCore(settings_for(tmp_path, **kwargs))


def received(source: str, version: int = 1) -> Received:
    data = tsk.loads(source)
    return Received(version=version, hash=tsk.document_hash(data), wire=tsk.to_wire(data))
