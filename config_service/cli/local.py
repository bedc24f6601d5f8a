"""Offline commands: `validate` a TSK file (and its schema) and `fmt` files into canonical TSK."""

from __future__ import annotations

import functools
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from config_service.atomic_file import write_atomically
from config_service.cli._common import read_input
from config_service.cli._errors import REFUSED, CommandFailed
from config_service.cli._group import State, global_options, json_option, main, pass_state
from config_service.cli._output import (
    echo_json,
    escape_controls,
    schema_error_lines,
    source_error_lines,
)
from config_service.names import InvalidName
from config_service.schema import SchemaInvalid, SchemaSet, check_schema, referenced_schemas
from config_service.settings import DEFAULT_MAX_BODY
from tskcfg import RequestRejected

MAX_REFERENCED_SCHEMAS = 50


def parse(file_name: str, raw: bytes) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[str]]:
    """(data, errors as {line, column, message}, lines to show) for one TSK file."""
    from config_service import tsk

    try:
        return tsk.load(io.BytesIO(raw)), [], []
    except tsk.TSKDecodeError as error:
        text = raw.decode("utf-8", errors="replace")
        item = {"line": error.lineno, "column": error.colno, "message": error.msg}
        return None, [item], source_error_lines(file_name, text, error.lineno, error.colno, error.msg)


# ---------------------------------------------------------------- validate


@dataclass(frozen=True)
class Checker:
    """One schema and the schemas its `$ref`s name, checked exactly as the server checks."""

    schemas: SchemaSet
    name: str

    def errors(self, data: Any) -> list[tuple[str, str]]:
        """Failures of a parsed document, checked exactly as the server checks it."""
        return [
            (failure["path"] or "/", failure["message"])
            for failure in self.schemas.document_errors(self.name, data)
        ]


class MissingSchema(Exception):
    """--schemas-dir has no schema for a file: that file fails, the others are still checked."""


def load_json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CommandFailed(f"cannot read {what} {path}: {error.strerror or error}") from None
    except ValueError as error:
        raise CommandFailed(f"{what} {path} is not JSON: {error}", error="invalid_schema") from None


def make_checker(name: str, schema: Any, others: dict[str, Any], label: str) -> Checker:
    try:
        check_schema(name, schema, others)
    except SchemaInvalid as error:
        raise CommandFailed(f"{label}: {error}", error="invalid_schema", details=error.details) from None
    return Checker(SchemaSet({**others, name: schema}, generation=0), name)


def sibling_schemas(directory: Path, leave_out: str | None = None) -> dict[str, Any]:
    """Every JSON object in DIRECTORY by file stem, which is how `"$ref": "database.json"` finds it."""
    found: dict[str, Any] = {}
    for path in sorted(directory.glob("*.json")):
        if path.stem == leave_out:
            continue
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # only matters if referenced, and then check_schema says the $ref does not resolve
        if isinstance(document, dict):
            found[path.stem] = document
    return found


def local_checker(schema_path: Path) -> Checker:
    schema = load_json_file(schema_path, "schema")
    others = sibling_schemas(schema_path.parent, leave_out=schema_path.stem)
    return make_checker(schema_path.stem, schema, others, str(schema_path))


def size_error(size: int, limit: int) -> str | None:
    """Why the server would refuse a body of `size` bytes (413), or None when it fits."""
    if size <= limit:
        return None
    if limit == DEFAULT_MAX_BODY:
        which = f"the server's default limit of {limit} bytes (1 MiB)"
    else:
        which = f"the limit of {limit} bytes given with --max-body"
    return f"{size} bytes, more than {which}: the server would refuse it (413 too_large)"


def run_validation(
    checker_for: Callable[[], Checker | None], file_name: str, raw: bytes
) -> tuple[bool, list[dict[str, Any]], list[str]]:
    """Parse first (a TSK error needs no schema), then validate against `checker_for()`, if any."""

    data, parse_errors, lines = parse(file_name, raw)
    if data is None:
        return False, parse_errors, lines
    checker = checker_for()
    if checker is None:
        return True, [], []
    failures = checker.errors(data)
    return (
        not failures,
        [{"path": path, "message": message} for path, message in failures],
        [f"{file_name}: {line}" for line in schema_error_lines(failures)],
    )


@main.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--schema", "schema_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Validate against this JSON Schema; its $refs are read from the same folder.")
@click.option("--schemas-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Validate each FILE against DIR/<FILE's name>.json, e.g. schemas/user-service.json.")
@click.option("--service", default=None,
              help="Validate against this service's schema on the server (needs the server).")
@click.option("--max-body", type=click.IntRange(min=1), default=DEFAULT_MAX_BODY, show_default=True,
              metavar="BYTES", help="Refuse files larger than this, as a server with `serve --max-body` does.")
@global_options
@pass_state
def validate(
    state: State,
    files: tuple[str, ...],
    schema_file: Path | None,
    schemas_dir: Path | None,
    service: str | None,
    max_body: int,
) -> None:
    """Check TSK files the way the server will, without pushing them (FILE `-` reads stdin).

    \b
    Without a schema option only the TSK is checked. A file larger than the
    server's size limit (1 MiB unless --max-body) fails as it would on the
    server. Exit 1 when any file fails.
    Errors show as file:line:column with the line and a caret; schema failures
    as `file: /json/pointer: message`.

    \b
    Examples:
      tskcfg validate environments/production/user-service.tsk --schema schemas/user-service.json
      tskcfg validate --schemas-dir schemas environments/*/*.tsk
      tskcfg get user-service staging | tskcfg validate - --service user-service
    """
    if sum(option is not None for option in (schema_file, schemas_dir, service)) > 1:
        raise click.UsageError("give at most one of --schema, --schemas-dir and --service")
    checkers: dict[str, Checker] = {}

    def checker_for(file: str) -> Checker | None:
        if schema_file is not None:
            key = str(schema_file)
            if key not in checkers:
                checkers[key] = local_checker(schema_file)
            return checkers[key]
        if schemas_dir is not None:
            if file == "-":
                raise click.UsageError("with --schemas-dir, FILE cannot be '-' (its name picks the schema)")
            path = schemas_dir / f"{Path(file).stem}.json"
            if not path.is_file():
                raise MissingSchema(f"no schema {path} for {file}")
            if str(path) not in checkers:
                checkers[str(path)] = local_checker(path)
            return checkers[str(path)]
        if service is not None:
            if service not in checkers:
                checkers[service] = server_checker(state, service)
            return checkers[service]
        return None

    results = []
    failed = False
    for file in files:
        file_name, raw = read_input(file)
        too_large = size_error(len(raw), max_body)
        try:
            if too_large is not None:
                ok, errors, lines = False, [{"path": "", "message": too_large}], [f"{file_name}: {too_large}"]
            else:
                ok, errors, lines = run_validation(functools.partial(checker_for, file), file_name, raw)
        except MissingSchema as missing:
            ok, errors, lines = False, [{"path": "", "message": str(missing)}], [f"{file_name}: {missing}"]
        except CommandFailed as failure:
            failure.json_output = state.json
            raise
        failed = failed or not ok
        results.append({"file": file_name, "ok": ok, "errors": errors})
        if state.json:
            continue
        if ok:
            checked = "valid" if checker_for(file) is not None else "valid TSK (no schema given)"
            click.echo(f"{file_name}: {checked}")
        else:
            # Schema messages quote the schema, which may be the server's.
            for line in lines:
                click.echo(escape_controls(line, keep_tabs=True), err=True)
    if state.json:
        echo_json({"ok": not failed, "files": results})
    if failed:
        sys.exit(REFUSED)


def server_checker(state: State, service: str) -> Checker:
    """The schema the server holds for SERVICE, with the schemas it `$ref`s (from the server, else
    from ./schemas when the token may not read them)."""
    api = state.api()
    schema = api.schema(service).get("schema")
    others: dict[str, Any] = {}
    pending = referenced_schemas(schema) - {service}
    # A bound on how many referenced schemas one validation fetches.
    for _ in range(MAX_REFERENCED_SCHEMAS):
        if not pending:
            break
        name = pending.pop()
        try:
            others[name] = api.schema(name).get("schema")
        except (RequestRejected, InvalidName):
            local = Path("schemas") / f"{name}.json"
            if not local.is_file():
                continue
            others[name] = load_json_file(local, "schema")
        pending |= referenced_schemas(others[name]) - set(others) - {service}
    return make_checker(service, schema, others, f"the schema of {service} on the server")


# ---------------------------------------------------------------- fmt


@main.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--check", is_flag=True, help="Change nothing; exit 1 when a file would be rewritten.")
@json_option
@pass_state
def fmt(state: State, files: tuple[str, ...], check: bool) -> None:
    """Rewrite TSK files in canonical form (FILE `-`: stdin to stdout).

    \b
    Comments are kept beside the keys they belong to, and $variables as
    written. A file with comments inside a multi-line array or object is left
    untouched, with a note saying so: rewriting would drop them. Exit 1 when a
    file does not parse, when a file could not be rewritten, or (with --check)
    when a file would change.

    \b
    Examples:
      tskcfg fmt generated/user-service.tsk
      tskcfg fmt --check environments/*/*.tsk
    """
    from config_service import tsk

    results = []
    failed = False
    for file in files:
        file_name, raw = read_input(file)
        data, errors, lines = parse(file_name, raw)
        if data is None:
            failed = True
            results.append({"file": file_name, "status": "invalid", "errors": errors})
            for line in lines:
                click.echo(line, err=True)
            continue
        text = raw.decode("utf-8")
        lost = ""
        try:
            formatted: str | None = tsk.reformat(text)
        except tsk.CannotFormat as error:
            formatted, lost = None, error.reason
        if formatted is None:
            status = "untouched"
            # --check asks "would fmt change it?"; fmt leaves such a file as it is, so it passes.
            failed = failed or not check
            click.echo(f"{file_name}: left untouched, cannot keep {lost}", err=True)
        elif formatted == text:
            status = "unchanged"
        elif check:
            status = "would_reformat"
            failed = True
            if not state.json:
                click.echo(f"would reformat {file_name}")
        elif file == "-":
            status = "reformatted"
            click.echo(formatted, nl=False)
        else:
            status = "reformatted"
            path = Path(file)
            write_atomically(path, formatted.encode("utf-8"), mode=path.stat().st_mode & 0o7777)
            if not state.json:
                click.echo(f"reformatted {file_name}")
        if file == "-" and status in ("unchanged", "untouched") and not check:
            # stdin to stdout: the output must always be the document.
            click.echo(text, nl=False)
        results.append({"file": file_name, "status": status, **({"reason": lost} if lost else {})})
    if state.json:
        echo_json({"ok": not failed, "files": results})
    if failed:
        sys.exit(REFUSED)
