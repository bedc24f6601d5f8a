"""Commands on configuration documents: push, get, history, diff, rollback, promote, services,
instances, audit and watch."""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from config_service.cli._common import read_input, with_source_context
from config_service.cli._group import State, global_options, main, pass_state
from config_service.cli._output import (
    echo_changes,
    echo_json,
    echo_unified_diff,
    json_text,
    say,
    short_hash,
    table,
)
from config_service.settings import DEFAULT_PIPELINE
from config_service.store.records import AUDIT_ACTIONS
from tskcfg import RequestRejected, ServerUnavailable


def where(service: str, environment: str) -> str:
    return f"{service}/{environment}"


def version_word(meta: dict[str, Any]) -> str:
    return f"version {meta.get('version')} (hash {short_hash(meta.get('hash'))})"


@main.command()
@click.argument("service")
@click.argument("environment")
@click.argument("file")
@click.option("-m", "--message", default="", help="Why this change; kept in the history.")
@click.option(
    "--if-version",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Only if the current version is N (0: only if there is none yet); else exit 1.",
)
@global_options
@pass_state
def push(
    state: State, service: str, environment: str, file: str, message: str, if_version: int | None
) -> None:
    """Push FILE as the new version of SERVICE in ENVIRONMENT (FILE `-` reads stdin).

    \b
    The server parses and validates it; an identical source creates nothing.

    \b
    Examples:
      tskcfg push user-service development environments/development/user-service.tsk -m "pool 10"
      cat user-service.tsk | tskcfg push user-service staging - --if-version 7
    """
    file_name, source = read_input(file)
    try:
        written = state.api().push(service, environment, source, message=message, if_version=if_version)
    except RequestRejected as error:
        raise with_source_context(state.failure(error), file_name, source) from None
    meta = written.body
    if state.json:
        echo_json(meta)
    elif written.created:
        say(f"{where(service, environment)}: {version_word(meta)} created")
    else:
        say(f"{where(service, environment)}: unchanged, {version_word(meta)} is identical")


@main.command()
@click.argument("service")
@click.argument("environment")
@click.option("--version", "version", type=click.IntRange(min=1), default=None, metavar="N",
              help="An older version instead of the current one.")
@click.option("--format", "output_format", type=click.Choice(["tsk", "json"]), default="tsk",
              show_default=True, help="The TSK source, or the data as JSON (@env kept as {\"$env\": ...}).")
@click.option("--path", "pointer", default=None, metavar="POINTER",
              help="Only the value at this JSON pointer of the current version, like /database/pool_size.")
@global_options
@pass_state
def get(
    state: State, service: str, environment: str, version: int | None, output_format: str, pointer: str | None
) -> None:
    """Print the current (or --version N) document of SERVICE in ENVIRONMENT.

    \b
    The document goes to stdout; one line on stderr says which version it is,
    who made it and why. --json prints the API's answer: metadata and `config`.

    \b
    Examples:
      tskcfg get user-service production > user-service.tsk
      tskcfg get user-service production --version 3 --format json
      tskcfg get user-service production --json | jq .version
      tskcfg get user-service production --path /database/pool_size
    """
    api = state.api()
    if pointer is not None:
        if version is not None:
            raise click.UsageError("--path reads the current version; leave out --version")
        key = api.get(service, environment, path=pointer)
        if state.json:
            echo_json(key)
        else:
            say(f"{where(service, environment)}: version {key.get('version')}, {pointer}", err=True)
            echo_json(key.get("value"))
        return
    body = api.get(service, environment, version=version)
    if state.json:
        echo_json(body)
        return
    say(describe_version(service, environment, body), err=True)
    if output_format == "json":
        echo_json(body.get("config"))
        return
    # The source of exactly the version described, even if a push lands in between.
    source = api.source(service, environment, int(body["version"]))
    # Printed as stored, to be saved or piped; TSK admits no control characters but tabs and newlines.
    click.echo(source, nl=False)


def describe_version(service: str, environment: str, meta: dict[str, Any]) -> str:
    """`svc/env: version 3 (hash ...), push by admin at <time>: "message"`, one line for people."""
    line = (
        f"{where(service, environment)}: {version_word(meta)}, {describe_kind(meta)} "
        f"by {meta.get('author')} at {meta.get('created_at')}"
    )
    return f"{line}: {meta['message']}" if meta.get("message") else line


def describe_kind(meta: dict[str, Any]) -> str:
    kind = str(meta.get("kind") or "-")
    origin = meta.get("promoted_from")
    if isinstance(origin, dict):
        return f"{kind} from {origin.get('environment')} v{origin.get('version')}"
    if meta.get("rolled_back_to") is not None:
        return f"{kind} to v{meta['rolled_back_to']}"
    return kind


@main.command()
@click.argument("service")
@click.argument("environment")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many versions.")
@click.option("--before", type=click.IntRange(min=1), default=None, metavar="N",
              help="Only versions older than N (to page back).")
@global_options
@pass_state
def history(state: State, service: str, environment: str, limit: int, before: int | None) -> None:
    """List the versions of SERVICE in ENVIRONMENT, newest first.

    \b
    Example:
      tskcfg history user-service production --limit 5
    """
    # One more than shown tells whether older versions remain.
    listed = list(itertools.islice(state.api().history(service, environment, before=before, page_size=limit), limit + 1))
    versions = listed[:limit]
    body = {"versions": versions, "next_before": versions[-1].get("version") if len(listed) > limit else None}
    if state.json:
        echo_json(body)
        return
    table(
        ["VERSION", "CREATED", "AUTHOR", "KIND", "HASH", "MESSAGE"],
        [
            [meta.get("version"), meta.get("created_at"), meta.get("author"), describe_kind(meta),
             short_hash(meta.get("hash")), meta.get("message") or ""]
            for meta in versions
        ],
    )
    if body.get("next_before"):
        say(f"(older: --before {body['next_before']})", err=True)


def echo_diff(body: dict[str, Any]) -> None:
    changes = body.get("changes") or []
    if not changes and not body.get("unified"):
        click.echo("no differences")
        return
    echo_changes(changes)
    if body.get("unified"):
        click.echo()
        echo_unified_diff(body["unified"])


@main.command()
@click.argument("service")
@click.argument("environment", required=False)
@click.option("--from", "from_version", type=click.IntRange(min=1), metavar="N",
              help="Older version (default: the one before --to).")
@click.option("--to", "to_version", type=click.IntRange(min=1), metavar="M",
              help="Newer version (default: the current one).")
@click.option("--from-env", metavar="ENV", help="Compare the current document of this environment ...")
@click.option("--to-env", metavar="ENV", help="... with the current document of this one.")
@global_options
@pass_state
def diff(
    state: State,
    service: str,
    environment: str | None,
    from_version: int | None,
    to_version: int | None,
    from_env: str | None,
    to_env: str | None,
) -> None:
    """Show what changed between two versions, or between two environments.

    \b
    Prints the changed paths (+ added, - removed, ~ changed), then a unified
    diff of the sources, coloured on a terminal. Without --from and --to it
    compares the version before the current one with the current one.

    \b
    Examples:
      tskcfg diff user-service production                 # what the last change did
      tskcfg diff user-service production --from 4 --to 5
      tskcfg diff user-service --from-env staging --to-env production
    """
    if environment is not None:
        if from_env or to_env:
            raise click.UsageError("give ENVIRONMENT with --from/--to, or --from-env and --to-env without it")
        body = state.api().diff(service, environment, from_version=from_version, to_version=to_version)
    else:
        if not (from_env and to_env) or from_version is not None or to_version is not None:
            raise click.UsageError("give ENVIRONMENT with --from/--to, or --from-env and --to-env")
        body = state.api().diff_environments(service, from_env, to_env)
    if state.json:
        echo_json(body)
    else:
        echo_diff(body)


@main.command()
@click.argument("service")
@click.argument("environment")
@click.argument("version", type=click.IntRange(min=1))
@click.option("-m", "--message", default="", help="Why; kept in the history.")
@global_options
@pass_state
def rollback(state: State, service: str, environment: str, version: int, message: str) -> None:
    """Make VERSION's source the current document again, as a new version.

    \b
    The old source is validated against today's schema first.

    \b
    Example:
      tskcfg rollback user-service production 4 -m "pool 40 exhausted the database"
    """
    written = state.api().rollback(service, environment, version, message=message)
    meta = written.body
    if state.json:
        echo_json(meta)
    elif written.created:
        say(f"{where(service, environment)}: {version_word(meta)} created from version {version}")
    else:
        say(f"{where(service, environment)}: unchanged, version {meta.get('version')} already has that source")


@main.command()
@click.argument("service")
@click.option("--from", "from_env", required=True, metavar="ENV", help="The environment to take the document from.")
@click.option("--to", "to_env", required=True, metavar="ENV", help="The next environment in the pipeline.")
@click.option("--version", "version", type=click.IntRange(min=1), default=None, metavar="N",
              help="Which version of --from (default: its current one).")
@click.option("--dry-run", is_flag=True, help="Only show the diff it would make; change nothing.")
@click.option("-m", "--message", default="", help="Why; kept in the history.")
@global_options
@pass_state
def promote(
    state: State,
    service: str,
    from_env: str,
    to_env: str,
    version: int | None,
    dry_run: bool,
    message: str,
) -> None:
    """Copy a tested document one step along the pipeline (e.g. staging to production).

    \b
    Values the schema marks environment-local ("x-environment-local": true)
    keep the target's own; --dry-run lists them apart from the changes.

    \b
    Examples:
      tskcfg promote user-service --from staging --to production --dry-run
      tskcfg promote user-service --from development --to staging -m "release 1.4"
    """
    written = state.api().promote(
        service, to_env, from_environment=from_env, version=version, message=message, dry_run=dry_run
    )
    result = written.body
    if state.json:
        echo_json(result)
        return
    if dry_run:
        if result.get("would_create"):
            say(f"{where(service, to_env)}: promoting from {from_env} would create a new version:")
            echo_diff(result.get("diff") or {})
        else:
            say(f"{where(service, to_env)}: nothing to promote, the source is already current")
        kept = result.get("kept_local") or []
        if kept:
            say(f"kept from {to_env} (environment-local): {', '.join(str(path) for path in kept)}")
        return
    if written.created:
        say(f"{where(service, to_env)}: {version_word(result)} created from {describe_origin(result, from_env)}")
    else:
        say(f"{where(service, to_env)}: unchanged, version {result.get('version')} already has that source")


def describe_origin(meta: dict[str, Any], from_env: str) -> str:
    origin = meta.get("promoted_from")
    if isinstance(origin, dict):
        return f"{origin.get('environment')} version {origin.get('version')}"
    return from_env


@main.command()
@global_options
@pass_state
def services(state: State) -> None:
    """List every service you may read, with its current version per environment.

    \b
    A document a file under environments/ backs is marked with its sync state:
    `file` (the file and the document agree), `api-ahead` (the API moved on and
    the file has not changed since), `CONFLICT` (the file changed too; its change
    waits: see `tskcfg sync take-file`).

    \b
    Example:
      tskcfg services
    """
    body = state.api().services()
    if state.json:
        echo_json(body)
        return
    entries = body.get("services", [])
    environments = environment_columns(entries)
    rows = []
    conflicts = []
    for entry in entries:
        per_env = entry.get("environments", {})
        rows.append([entry.get("service")] + [
            document_cell(per_env[env]) if env in per_env else "-" for env in environments
        ])
        for env in environments:
            sync = per_env.get(env, {}).get("sync") or {}
            if sync.get("state") == "conflict":
                conflicts.append((entry.get("service"), env, sync, per_env[env].get("rollout")))
    table(["SERVICE", *[env.upper() for env in environments]], rows)
    for service, env, sync, rollout in conflicts:
        why = f"during rollout {rollout.get('id')}" if rollout else "after the API moved on"
        say(
            f"{service}/{env}: sync conflict: {sync.get('file')} changed {why} "
            f"(file_version {sync.get('file_version')}, current_version {sync.get('current_version')}); "
            f"take the file (tskcfg sync take-file {service} {env}) or make it equal the current "
            f"source (tskcfg get {service} {env} > the file)"
        )


# How `tskcfg services` marks a document's sync state (docs/cli.md).
SYNC_MARKS = {"in_sync": "file", "api_ahead": "api-ahead", "conflict": "CONFLICT"}


def document_cell(document: dict[str, Any]) -> str:
    """One environment's cell: `v5`, with `retired` and the file sync state when there is one."""
    cell = f"v{document.get('version')}"
    if document.get("retired"):
        cell += " retired"
    state = (document.get("sync") or {}).get("state")
    if state in SYNC_MARKS:
        cell += f" {SYNC_MARKS[state]}"
    return cell


def environment_columns(entries: list[dict[str, Any]]) -> list[str]:
    """Every environment of the answer, in the server's pipeline order.

    Each service lists its environments in pipeline order, but only those it has a document in.
    The columns keep every order a service shows; where no service relates two environments (one
    held only in production, another only in development), the default pipeline decides.
    """
    first_seen: list[str] = []
    earlier: dict[str, set[str]] = {}
    for entry in entries:
        names = list(entry.get("environments", {}))
        for name in names:
            if name not in earlier:
                earlier[name] = set()
                first_seen.append(name)
        for before, after in zip(names, names[1:], strict=False):
            earlier[after].add(before)

    def rank(name: str) -> tuple[int, int]:
        default = DEFAULT_PIPELINE.index(name) if name in DEFAULT_PIPELINE else len(DEFAULT_PIPELINE)
        return default, first_seen.index(name)

    columns: list[str] = []
    while earlier:
        ready = [name for name, before in earlier.items() if before <= set(columns)] or list(earlier)
        chosen = min(ready, key=rank)
        columns.append(chosen)
        del earlier[chosen]
    return columns


@main.command()
@click.argument("service")
@click.argument("environment")
@global_options
@pass_state
def instances(state: State, service: str, environment: str) -> None:
    """List the instances of SERVICE in ENVIRONMENT and the version each one runs.

    \b
    BEHIND counts versions an instance is behind; STALE means it stopped reporting.

    \b
    Example:
      tskcfg instances user-service production
    """
    body = state.api().instances(service, environment)
    if state.json:
        echo_json(body)
        return
    table(
        ["INSTANCE", "VERSION", "STATUS", "LAST SEEN", "BEHIND", "STALE", "ERROR"],
        [
            [item.get("instance_id"), item.get("version"), item.get("status"), item.get("last_seen"),
             item.get("behind"), item.get("stale"), item.get("error") or ""]
            for item in body.get("instances", [])
        ],
    )


RELATIVE_TIME = re.compile(r"(\d+)\s*([smhdw])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`30m`, `2h`, `7d` ago, or an ISO 8601 time (UTC when no offset is given)."""
    now = now or datetime.now(UTC)
    match = RELATIVE_TIME.fullmatch(text.strip().lower())
    if match:
        return now - timedelta(seconds=int(match.group(1)) * UNIT_SECONDS[match.group(2)])
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a duration like 30m, 2h, 7d nor an ISO time like 2026-01-31T12:00:00Z",
            param_hint="--since",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@main.command()
@click.option("--service", default=None, help="Only entries about this service.")
@click.option("--env", "environment", default=None, metavar="ENV", help="Only entries about this environment.")
@click.option("--action", type=click.Choice(AUDIT_ACTIONS), default=None, help="Only this action.")
@click.option("--actor", default=None, help="Only what this token name did.")
@click.option("--since", default=None, metavar="WHEN", help="Only entries since WHEN: 30m, 2h, 7d or an ISO time.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="At most this many entries.")
@global_options
@pass_state
def audit(
    state: State,
    service: str | None,
    environment: str | None,
    action: str | None,
    actor: str | None,
    since: str | None,
    limit: int,
) -> None:
    """Show who did what and when, newest first (admin tokens).

    \b
    Examples:
      tskcfg audit --service user-service --env production --since 24h
      tskcfg audit --actor ci --action push --since 2026-01-31T00:00:00Z --json
    """
    cutoff = parse_since(since) if since else None
    found = state.api().audit(
        service=service, environment=environment, action=action, actor=actor, since=cutoff, page_size=limit
    )
    # One more than shown tells whether older entries remain.
    listed = list(itertools.islice(found, limit + 1))
    entries = listed[:limit]
    if state.json:
        echo_json({"entries": entries, "next_before": entries[-1].get("id") if len(listed) > limit else None})
        return
    table(
        ["AT", "ACTOR", "ACTION", "SERVICE", "ENVIRONMENT", "VERSION", "REQUEST", "DETAIL"],
        [
            [entry.get("at"), entry.get("actor"), entry.get("action"), entry.get("service"),
             entry.get("environment"), entry.get("version"), entry.get("request_id"), entry.get("detail")]
            for entry in entries
        ],
    )


@main.command()
@click.argument("service")
@click.argument("environment")
@click.option("--count", type=click.IntRange(min=1), default=None, metavar="N",
              help="Stop after N new versions (default: until Ctrl-C).")
@global_options
@pass_state
def watch(state: State, service: str, environment: str, count: int | None) -> None:
    """Print each new version of SERVICE in ENVIRONMENT as it arrives, until interrupted.

    \b
    Reconnects by itself (resuming where it stopped) if the connection drops;
    --json prints one JSON object per line.

    \b
    Examples:
      tskcfg watch user-service production
      tskcfg watch user-service staging --count 1 --json    # wait for the next push
    """
    api = state.api()
    seen = 0
    last_event_id: str | None = None
    connected_once = False
    failures = 0
    try:
        while True:
            try:
                with api.events(service, environment, last_event_id=last_event_id) as stream:
                    if not connected_once:
                        # On stderr, so --json output stays one JSON object per line.
                        say(f"watching {where(service, environment)} (Ctrl-C to stop)", err=True)
                    connected_once, failures = True, 0
                    for event in stream:
                        if event.id is not None:
                            last_event_id = event.id
                        if event.event != "version":
                            continue
                        show_event(state, event.data)
                        seen += 1
                        if count is not None and seen >= count:
                            return
            except ServerUnavailable:
                # Refusals (bad token, no scope) and a server never reached end the command at once.
                if not connected_once:
                    raise
            failures += 1
            delay = random.uniform(0, min(30.0, 2.0**failures))
            click.echo(f"connection lost; reconnecting in {delay:.0f} s", err=True)
            time.sleep(delay)
    except KeyboardInterrupt:
        return


def show_event(state: State, data: str) -> None:
    try:
        payload = json.loads(data)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        payload = {"raw": data}
    if state.json:
        click.echo(json_text(payload, indent=None))
        return
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    say(
        f"{stamp}  {payload.get('service')}/{payload.get('environment')}  "
        f"version {payload.get('version')}  hash {short_hash(payload.get('hash'))}"
    )

