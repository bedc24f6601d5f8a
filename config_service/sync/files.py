"""Which files file sync imports: `environments/<environment>/<service>.tsk` and `schemas/<name>.json`.

Hidden files, sub-folders of an environment folder, other file types, and folders that are
not a configured environment (reported once, as "ignored") do not count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from config_service.core.file_sync import CONFIG_SUFFIX

# Imported first, in this order: a service schema may `$ref` them.
SECTION_SCHEMAS = ("database", "cache", "logging", "security")
SCHEMA_SUFFIX = ".json"


@dataclass(frozen=True)
class SyncFile:
    """One file FileSync imports: a document or a schema, and the names it stands for."""

    kind: Literal["config", "schema"]
    path: Path
    author: str
    name: str
    environment: str | None = None


class SyncFolders:
    """The environments and schemas folders, and which of their files count."""

    def __init__(
        self,
        environments_dir: Path,
        schemas_dir: Path | None,
        environments: tuple[str, ...],
        log: logging.Logger,
        ignored: Callable[[Path], None],
    ) -> None:
        self.environments_dir = environments_dir
        self.schemas_dir = schemas_dir
        self.environments = environments
        self._log = log
        self._ignored = ignored  # told of each folder that is no environment, once
        self._ignored_folders: set[Path] = set()

    def schema_files(self) -> list[SyncFile]:
        """Every schema file, the section schemas first, then the rest by name."""
        if self.schemas_dir is None or not self.schemas_dir.is_dir():
            return []
        files = [
            file
            for path in self.schemas_dir.iterdir()
            if (file := self.classify(path, quiet=True)) is not None
        ]
        order = {name: index for index, name in enumerate(SECTION_SCHEMAS)}
        return sorted(files, key=lambda file: (order.get(file.name, len(order)), file.name))

    def config_files(self) -> list[SyncFile]:
        """Every document file of every configured environment."""
        if not self.environments_dir.is_dir():
            return []
        files: list[SyncFile] = []
        for folder in sorted(self.environments_dir.iterdir()):
            if folder.is_dir() and self.environment_folder_known(folder):
                files.extend(self.folder_files(folder))
        return files

    def folder_files(self, folder: Path) -> list[SyncFile]:
        """The document files of one environment folder."""
        files = []
        for path in sorted(folder.iterdir()):
            file = self.classify(path, quiet=True)
            if file is not None:
                files.append(file)
        return files

    def environment_folder_known(self, folder: Path) -> bool:
        """True for a configured environment's folder; another is logged and reported once."""
        if folder.name in self.environments:
            return True
        if folder not in self._ignored_folders and not folder.name.startswith("."):
            self._ignored_folders.add(folder)
            self._log.warning(
                "file sync: %s is not a configured environment (%s); its files are ignored",
                folder,
                ", ".join(self.environments),
            )
            self._ignored(folder)
        return False

    def classify(self, path: Path, *, quiet: bool = False) -> SyncFile | None:
        """The SyncFile for a path in one of the watched folders, or None when it is not one of ours."""
        if path.name.startswith("."):
            return None  # hidden files: editors' swap and lock files
        if self.schemas_dir is not None and path.parent == self.schemas_dir:
            if path.suffix != SCHEMA_SUFFIX or path.is_dir():
                return None
            return SyncFile("schema", path, f"file:{self.schemas_dir.name}/{path.name}", path.stem)
        try:
            relative = path.relative_to(self.environments_dir)
        except ValueError:
            return None
        if len(relative.parts) != 2:
            if len(relative.parts) > 2 and not quiet:
                self._log.debug("file sync: %s is in a sub-folder; ignored", path)
            return None
        environment, file_name = relative.parts
        if not file_name.endswith(CONFIG_SUFFIX) or path.is_dir():
            return None
        if not self.environment_folder_known(path.parent):
            return None
        return SyncFile(
            "config",
            path,
            f"file:{relative.as_posix()}",
            file_name[: -len(CONFIG_SUFFIX)],
            environment,
        )

    def environment_folder_of(self, path: Path) -> Path | None:
        """The configured environment folder `path` lies somewhere inside, or None."""
        try:
            relative = path.relative_to(self.environments_dir)
        except ValueError:
            return None
        if len(relative.parts) < 2 or relative.parts[0] not in self.environments:
            return None
        return self.environments_dir / relative.parts[0]
