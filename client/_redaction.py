"""Keeping values that came from the environment (secrets through `@env`) out of messages and reports."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from config_service import tsk

# A string from the environment shorter than this is hidden only where it is quoted: bare, it
# could be any word of a message ("true", a port number).
BARE_SECRET_LENGTH = 8


def environment_texts(data: Any, resolved: Any) -> dict[str, str]:
    """Each string that came from an environment variable (as quoted and, when long, as is) ->
    `@env(NAME)`. Values written in the document (defaults too) are not in it."""
    texts: dict[str, str] = {}

    def collect(value: Any, name: str) -> None:
        if isinstance(value, str) and value:
            texts[repr(value)] = f"@env({name})"
            if len(value) >= BARE_SECRET_LENGTH:
                texts[value] = f"@env({name})"
        elif isinstance(value, dict):
            for key, item in value.items():
                collect(key, name)
                collect(item, name)
        elif isinstance(value, list):
            for item in value:
                collect(item, name)

    def walk(node: Any, value: Any) -> None:
        if isinstance(node, tsk.EnvRef):
            if node.name in os.environ:
                collect(value, node.name)
        elif isinstance(node, dict) and isinstance(value, dict):
            for key, item in node.items():
                walk(item, value.get(key))
        elif isinstance(node, list) and isinstance(value, list):
            for item, resolved_item in zip(node, value, strict=False):
                walk(item, resolved_item)

    walk(data, resolved)
    return texts


def hide_environment_text(message: str, texts: Mapping[str, str]) -> str:
    """`message` with every text of `environment_texts` replaced by its `@env(NAME)`.

    Schema messages repeat the value they refuse, and an applier's or handler's error may quote
    a url with its password; both are logged and reported to the server, where any reader of
    the service sees them: a secret passed through `@env` must not travel that way.
    """
    for text in sorted(texts, key=len, reverse=True):
        message = message.replace(text, texts[text])
    return message


def hide_environment_values(
    details: list[dict[str, Any]], data: Any, resolved: Any
) -> list[dict[str, Any]]:
    """Schema failures `{path, message}` with their messages passed through `hide_environment_text`."""
    texts = environment_texts(data, resolved)
    if not texts:
        return details
    return [
        {**detail, "message": hide_environment_text(str(detail.get("message", "")), texts)}
        for detail in details
    ]
