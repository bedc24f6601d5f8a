"""Fixtures shared by the server's tests: a real `tskcfg serve` (`server`) and an admin client (`admin`)."""

from tests.serving import admin, server

__all__ = ["admin", "server"]
